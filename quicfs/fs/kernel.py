"""Kernel-side tuning of a FUSE mount that the FUSE protocol itself does not carry.

The kernel's page-cache read-ahead for a FUSE mount starts at the block layer's default
(128 KiB) and the INIT reply can only lower it, so every read of a big file would reach us
as 128 KiB requests. Like cifs.ko, which sizes its read-ahead from `rsize`, the mount
raises its backing device's `read_ahead_kb` (a root-only sysfs knob) to a few megabytes:
the kernel then asks for max_pages-sized (1 MiB) reads, several in flight at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("quicfs.fs")

#: Read-ahead window for the mount's backing device, in KiB.
READ_AHEAD_KIB = 4096


def mountpoint_path(mountpoint: str) -> str:
    """The absolute path of a mount point, its parent resolved and the mount point itself
    not: resolving it would stat the mount, which waits for a server that may be gone
    (hard mounts), or for the kernel's INIT while the mount is being made."""
    path = os.path.abspath(mountpoint).rstrip("/") or "/"
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def mount_entry(mountpoint: str) -> list[str] | None:
    """The mount's line of /proc/self/mountinfo, split in fields; None if not mounted."""
    target = mountpoint_path(mountpoint)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                # mountinfo escapes spaces and the like as octal (\040).
                if len(fields) > 4 and \
                        fields[4].encode().decode("unicode_escape") == target:
                    return fields
    except OSError:
        pass
    return None


def bdi_path(mountpoint: str) -> Path | None:
    """The sysfs directory of the mount's backing device info (an anonymous 0:N device),
    named in mountinfo: a stat() of the mount point would ask our own filesystem, which
    may refuse (a share root the user cannot read) or not answer yet."""
    entry = mount_entry(mountpoint)
    return Path(f"/sys/class/bdi/{entry[2]}") if entry is not None else None


def raise_read_ahead(mountpoint: str, kib: int = READ_AHEAD_KIB) -> int | None:
    """Set the mount's read-ahead window; the value in effect, or None if we may not."""
    bdi = bdi_path(mountpoint)
    if bdi is None:
        return None
    knob = bdi / "read_ahead_kb"
    try:
        knob.write_text(f"{kib}\n")
        return int(knob.read_text())
    except OSError as exc:
        # Not root, or a sysfs without the knob: the mount works, with smaller reads.
        log.debug("cannot set %s: %s", knob, exc)
        return None


__all__ = ["READ_AHEAD_KIB", "bdi_path", "mount_entry", "mountpoint_path", "raise_read_ahead"]
