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


def bdi_path(mountpoint: str) -> Path:
    """The sysfs directory of the mount's backing device info (an anonymous 0:N device)."""
    dev = os.stat(mountpoint).st_dev
    return Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}")


def raise_read_ahead(mountpoint: str, kib: int = READ_AHEAD_KIB) -> int | None:
    """Set the mount's read-ahead window; the value in effect, or None if we may not."""
    knob = bdi_path(mountpoint) / "read_ahead_kb"
    try:
        knob.write_text(f"{kib}\n")
        return int(knob.read_text())
    except OSError as exc:
        # Not root, or a sysfs without the knob: the mount works, with smaller reads.
        log.debug("cannot set %s: %s", knob, exc)
        return None


__all__ = ["READ_AHEAD_KIB", "bdi_path", "raise_read_ahead"]
