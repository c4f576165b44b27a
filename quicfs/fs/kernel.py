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
import re
import select
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
    target = os.fsencode(mountpoint_path(mountpoint))
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                # mountinfo writes space, tab, newline and backslash as octal (\040), the
                # other bytes as they are: compared as bytes, a name beyond ASCII matches.
                if len(fields) > 4 and _OCTAL.sub(_byte, fields[4]) == target:
                    return [os.fsdecode(field) for field in fields]
    except OSError:
        pass
    return None


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _byte(match: re.Match[bytes]) -> bytes:
    return bytes([int(match.group(1), 8)])


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


def fuse_connected() -> bool:
    """Whether the kernel still holds this process's FUSE connection. It does after the
    mount point is gone from the mount table while anything on the mount is in use:
    ``umount -l`` detaches the mount at once, but the file system lives (and must be
    served) until its last open file or working directory lets go, as cifs's does. Then,
    or at a plain umount, the kernel aborts the connection (fuse_conn_destroy), and
    /dev/fuse polls as an error (fuse_dev_poll). pyfuse3 keeps its descriptor to itself:
    it is found among ours."""
    fd = _fuse_fd()
    if fd is None:
        return False
    poller = select.poll()
    poller.register(fd, 0)  # error and hang-up are reported whatever is asked for
    return not any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
                   for _, events in poller.poll(0))


def _fuse_fd() -> int | None:
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                return int(name)
        except OSError:
            continue  # (closed meanwhile, or the listing's own descriptor)
    return None


__all__ = ["READ_AHEAD_KIB", "bdi_path", "fuse_connected", "mount_entry", "mountpoint_path",
           "raise_read_ahead"]
