"""What FUSE does not say about the process calling: its supplementary groups.

A FUSE request carries the caller's uid, gid (the primary group) and pid; the kernel's
rules for set-group-ID bits ask whether the caller is in a file's group at all
(in_group_or_capable). The other groups are in /proc/PID/status.
"""

from __future__ import annotations

from typing import Any

from quicfs.procstatus import status_fields


def groups_of(pid: int) -> frozenset[int]:
    """The supplementary groups of process (or thread) ``pid``; none if it is gone."""
    try:
        return frozenset(int(g) for g in status_fields(pid, "Groups").get("Groups", "").split())
    except ValueError:
        return frozenset()


def in_group_or_root(ctx: Any, gid: int) -> bool:
    """Whether the caller of a request (pyfuse3's RequestContext) is in group ``gid``, or
    is root (who holds CAP_FSETID, as the kernel would check)."""
    if ctx.uid == 0 or ctx.gid == gid:
        return True
    return gid in groups_of(ctx.pid)


__all__ = ["groups_of", "in_group_or_root"]
