"""mount(8)'s generic flags (noexec, nosuid, relatime, ...) on a FUSE mount.

libfuse takes only some of them when it mounts (ro/rw, suid, dev, exec, sync, atime,
dirsync: its fuse_session_new() refuses the others); the rest are per-mount flags that a
remount sets (``mount -i -o remount,relatime``: the kernel keeps the flags it is not told
about). mount(8) drops ``dev`` and ``suid`` before it calls a helper, as they are the
kernel's defaults for a mount made by root, while libfuse mounts ``nodev,nosuid`` unless
told otherwise: a root mount gets them back, as mount.cifs gives them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

#: Each flag and its opposite; the last one given wins (mount(8)'s rule).
_OPPOSITE = {
    "suid": "nosuid", "dev": "nodev", "exec": "noexec", "async": "sync",
    "atime": "noatime", "diratime": "nodiratime", "norelatime": "relatime",
    "nostrictatime": "strictatime", "nolazytime": "lazytime", "symfollow": "nosymfollow",
}
_OPPOSITE.update({v: k for k, v in list(_OPPOSITE.items())})

#: What libfuse passes on when it mounts.
AT_MOUNT = frozenset({"suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async",
                      "atime", "noatime", "dirsync"})


def resolve(flags: Iterable[str], root: bool | None = None) -> list[str]:
    """The flags in effect: of a flag and its opposite the last given; ``dev,suid`` for
    root unless ``nodev``/``nosuid`` were given."""
    chosen: dict[str, str] = {}
    for flag in flags:
        chosen[min(flag, _OPPOSITE.get(flag, flag))] = flag
    if os.geteuid() == 0 if root is None else root:
        for flag in ("dev", "suid"):
            chosen.setdefault(min(flag, _OPPOSITE[flag]), flag)
    return list(chosen.values())


def split(flags: Iterable[str], root: bool | None = None) -> tuple[set[str], list[str]]:
    """(flags for libfuse at mount time, flags only a remount sets)."""
    effective = resolve(flags, root)
    return ({f for f in effective if f in AT_MOUNT},
            [f for f in effective if f not in AT_MOUNT])


def remount(mountpoint: str, flags: Iterable[str]) -> None:
    """Set per-mount flags on a live mount; OSError with mount(8)'s words if refused."""
    wanted = ",".join(flags)
    options = ",".join(["remount", *flags])
    # -i: mount(8) does the remount itself instead of calling a helper (ours, or for a
    # mount of plain type "fuse", libfuse's mount.fuse, which cannot parse //host/share).
    proc = subprocess.run(["mount", "-i", "-o", options, mountpoint],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise OSError(f"remount of {mountpoint} ({wanted or 'no flags'}) failed: {why[0]}")


__all__ = ["AT_MOUNT", "remount", "resolve", "split"]
