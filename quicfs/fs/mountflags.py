"""mount(8)'s generic flags (noexec, nosuid, relatime, ...) on a FUSE mount.

libfuse takes only some of them when it mounts (ro/rw, suid, dev, exec, sync, atime,
dirsync: its fuse_session_new() refuses the others); the rest are per-mount flags that a
remount sets (``mount -i -o remount,relatime``: the kernel keeps the flags it is not told
about).

Every mount is ``nosuid,nodev`` unless told ``suid`` or ``dev``, root's too: with mount
option metadata, setuid bits and device nodes come from EAs that anyone who may write to
the share sets (a planted setuid-root program, a world-writable device node). mount(8)
drops ``suid`` and ``dev`` before it calls a helper (they are the kernel's defaults for
root), so ``allow_suid`` and ``allow_dev`` say them through it (options.py); an
explicit ``nosuid`` or ``nodev`` still wins over them, wherever it stands (mount(8)
puts its own flags first: `mount -o nosuid` of an fstab entry with allow_suid, as
xfstests' generic/128 does, must not end suid).
"""

from __future__ import annotations

import functools
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


#: What a mount is unless told otherwise.
SAFE = ("nosuid", "nodev")
#: Options that allow a flag mount(8) will not pass: taken unless the opposite is given.
ALLOWS = {"allow_suid": "suid", "allow_dev": "dev"}


def resolve(flags: Iterable[str], *, defaults: bool = True) -> list[str]:
    """The flags in effect: of a flag and its opposite the last given; ``allow_suid``
    and ``allow_dev`` where neither was; with ``defaults`` (a new mount, not a remount)
    ``nosuid,nodev`` unless ``suid``/``dev``."""
    chosen: dict[str, str] = {}
    allowed = []
    for flag in flags:
        if flag in ALLOWS:
            allowed.append(ALLOWS[flag])
        else:
            chosen[min(flag, _OPPOSITE.get(flag, flag))] = flag
    for flag in allowed:
        chosen.setdefault(min(flag, _OPPOSITE[flag]), flag)
    if defaults:
        for flag in SAFE:
            chosen.setdefault(min(flag, _OPPOSITE[flag]), flag)
    return list(chosen.values())


@functools.lru_cache(maxsize=16)
def trusts(flags: tuple[str, ...]) -> tuple[bool, bool]:
    """Whether a mount with ``flags`` honours (setuid and setgid bits, device nodes):
    only when told ``suid``, ``dev`` (fs/attrs.py shows them only then)."""
    effective = resolve(flags)
    return "suid" in effective, "dev" in effective


def split(flags: Iterable[str]) -> tuple[set[str], list[str]]:
    """(flags for libfuse at mount time, flags only a remount sets)."""
    effective = resolve(flags)
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


__all__ = ["AT_MOUNT", "SAFE", "remount", "resolve", "split", "trusts"]
