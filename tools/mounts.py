"""Mount points, read from /proc/self/mountinfo, and their unmounting: what the demo and
xfstests/run undo when they stop."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_OCTAL = re.compile(rb"\\([0-7]{3})")


def _points() -> list[bytes]:
    # mountinfo writes space, tab, newline and backslash as octal (\040).
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [_OCTAL.sub(lambda m: bytes([int(m[1], 8)]), line.split()[4])
            for line in lines if len(line.split()) > 4]


def _key(path: Path | str) -> bytes:
    return os.fsencode(os.path.realpath(path))


def is_mounted(path: Path | str) -> bool:
    return _key(path) in _points()


def mounted_under(path: Path | str) -> list[Path]:
    """Mount points at or below ``path``, deepest first: the order to unmount them in."""
    root = _key(path)
    below = root.rstrip(b"/") + b"/"
    found = {p for p in _points() if p == root or p.startswith(below)}
    return [Path(os.fsdecode(p)) for p in sorted(found, key=lambda p: -p.count(b"/"))]


def unmount(path: Path | str) -> None:
    """Unmount ``path`` if it is mounted; lazily if a program still holds it."""
    for _ in range(4):  # mounts may be stacked on one mount point
        if not is_mounted(path):
            return
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def unmount_under(path: Path | str) -> None:
    """Unmount ``path`` and everything mounted below it."""
    for point in mounted_under(path):
        unmount(point)
