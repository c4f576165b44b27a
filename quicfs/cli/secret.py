"""A password on the command line (``-o password=``), kept from other local users.

Any user reads any process's command line (``ps``, /proc/PID/cmdline). The kernel shows
the bytes of the process's own argument area, so rewriting that area in place (as
setproctitle does) takes the password out of what ``ps`` shows, from the first moment the
program runs its own code: before that (the interpreter's start-up, ~0.1 s) it was
visible, which ``warn`` tells a user at a terminal. Re-executing with the password on a
pipe would leave the same window and add a second start-up.

A process that holds a password or session keys is also made not dumpable
(PR_SET_DUMPABLE 0): no core file, and another process of the same user can no longer
read its memory (/proc/PID/mem, ptrace) or its environment.
"""

from __future__ import annotations

import ctypes
import os
import sys

from quicfs.options import split_options

#: Option names whose value is a password (options.py).
SECRET_OPTIONS = ("password", "pass")
PR_SET_DUMPABLE = 4


def hide_password() -> bool:
    """Take every password option out of the ``-o`` arguments of this process's command
    line as the kernel shows it; True when there was one. sys.argv keeps them."""
    area = _arg_area()
    if area is None:
        return False
    start, end = area
    raw = ctypes.string_at(start, end - start)
    args = raw.split(b"\0")
    changed = False
    for i, arg in enumerate(args):
        after_o = i > 0 and args[i - 1] == b"-o"
        if not (after_o or (arg.startswith(b"-o") and len(arg) > 2)):
            continue
        prefix = b"" if after_o else b"-o"
        kept = _without_secrets(arg[len(prefix):])
        if kept is not None:
            args[i] = prefix + kept
            changed = True
    if changed:
        new = b"\0".join(args)
        # The area keeps its size; what the shorter arguments leave is NULs, which ps
        # shows as trailing blanks.
        ctypes.memmove(start, new.ljust(len(raw), b"\0"), len(raw))
    return changed


def _without_secrets(text: bytes) -> bytes | None:
    """The option string without its password options, None if it had none."""
    items = split_options(os.fsdecode(text))
    kept = [item for item in items
            if item.partition("=")[0].strip() not in SECRET_OPTIONS]
    if len(kept) == len(items):
        return None
    return os.fsencode(",".join(item.replace(",", ",,") for item in kept))


def _arg_area() -> tuple[int, int] | None:
    """(arg_start, arg_end) of this process, fields 48 and 49 of /proc/self/stat."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # Fields after the command name, which may hold spaces and ')': field 3 first.
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return None
    return (start, end) if 0 < start < end else None


def warn(prog: str) -> None:
    """One line for a person at a terminal (a script's stderr stays its errors alone)."""
    if sys.stderr.isatty():
        print(f"{prog}: warning: password= on a command line is visible to other users "
              "while the command starts; use credentials=FILE or the PASSWD environment "
              "variable", file=sys.stderr)


def undumpable() -> None:
    """PR_SET_DUMPABLE 0 for the rest of the process's life (prctl(2))."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux's C library: nothing to set


def protect(prog: str) -> None:
    """At the start of a command that will hold a password: hide it, say so, and keep
    this process's memory from other processes."""
    if hide_password():
        warn(prog)
    undumpable()


__all__ = ["hide_password", "protect", "undumpable", "warn"]
