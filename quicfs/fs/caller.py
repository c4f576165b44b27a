"""What FUSE does not say about the process calling: its supplementary groups and its
pending signals, from /proc/PID/status.

A FUSE request carries the caller's uid, gid (the primary group) and pid; the kernel's
rules for set-group-ID bits ask whether the caller is in a file's group at all
(in_group_or_capable). And a signal to a program waiting on a hard mount must end its wait
(client/interrupt.py): FUSE tells a file system of one with FUSE_INTERRUPT, which pyfuse3
(3.5) does not pass on, so the pending signals are looked at instead.
"""

from __future__ import annotations

import functools
import signal
from typing import Any

from quicfs.client import interrupt

#: Signals that stop, continue or by default are ignored: not a reason to give up a call
#: (a shell's SIGCHLD, a terminal's SIGWINCH, ^Z).
_HARMLESS = 0
for _sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCONT,
             signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG):
    _HARMLESS |= 1 << (_sig - 1)


def status_fields(pid: int, *names: str) -> dict[str, str]:
    """The fields ``names`` of process (or thread) ``pid``'s status, as text; empty when
    the process is gone."""
    found: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in names:
                    found[key] = value.strip()
    except OSError:
        return {}
    return found


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


def signal_pending(pid: int) -> bool:
    """Whether ``pid`` has a signal pending that it does not block (and that is not one
    of _HARMLESS). A fatal signal the program does not handle shows as SIGKILL."""
    # Gone (no fields): nobody waits any more, the call may finish when it can.
    try:
        masks = {key: int(value, 16) for key, value
                 in status_fields(pid, "SigPnd", "ShdPnd", "SigBlk").items()}
    except ValueError:
        return False
    pending = (masks.get("SigPnd", 0) | masks.get("ShdPnd", 0)) & ~masks.get("SigBlk", 0)
    return bool(pending & ~_HARMLESS)


def calling(pid: int | None) -> interrupt.calling:
    """Within this, the current task serves a call made by process (thread) ``pid``:
    a signal to it ends the call's waits for a lost server."""
    if not pid:
        return interrupt.calling(None)
    return interrupt.calling(functools.partial(signal_pending, pid), f"process {pid}")
