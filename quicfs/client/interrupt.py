"""Waits for a lost server that a signal to the waiting program cuts short.

A hard mount waits for its server without end (link.py), yet a program stuck on it must
stay killable, and a program that handles a signal must get its EINTR. FUSE tells a file
system of such a signal with FUSE_INTERRUPT, which pyfuse3 (3.5) does not pass on; so the
FUSE edge names each call's caller (``calling``), the places that wait for the server
wrap their waits (``wait_interruptibly``), and while one waits, it looks at its caller's
pending signals in /proc/PID/status every POLL seconds. A pending signal ends the wait
with Interrupted (EINTR). As NFS and cifs.ko hard mounts, only the waiting ends: nothing
sent is taken back, and work the mount does in the background (gathered writes) goes on
waiting.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import NamedTuple

import trio

from quicfs.errors import Interrupted
from quicfs.procstatus import status_fields

POLL = 0.2

#: Signals that stop, continue or by default are ignored: not a reason to give up a call
#: (a shell's SIGCHLD, a terminal's SIGWINCH, ^Z).
_HARMLESS = 0
for _sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCONT,
             signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG):
    _HARMLESS |= 1 << (_sig - 1)


class _Call(NamedTuple):
    pid: int
    #: The task serving the call: tasks it starts inherit the context, not the caller.
    task: trio.lowlevel.Task


_CALLER: ContextVar[_Call | None] = ContextVar("quicfs_caller", default=None)


class calling:
    """Within this, the current task serves a call made by process (thread) ``pid``.

    Used as a function; a class, not a generator, as it wraps every FUSE request."""

    __slots__ = ("_pid", "_token")

    def __init__(self, pid: int | None) -> None:
        self._pid = pid

    def __enter__(self) -> None:
        pid = self._pid
        self._token = _CALLER.set(_Call(pid, trio.lowlevel.current_task()) if pid else None)

    def __exit__(self, *exc: object) -> None:
        _CALLER.reset(self._token)


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


async def wait_interruptibly(wait: Callable[[], Awaitable[object]]) -> None:
    """``await wait()``, unless the call this task serves has its caller signalled
    first: then Interrupted."""
    call = _CALLER.get()
    if call is None or call.task is not trio.lowlevel.current_task():
        await wait()
        return
    interrupted = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal interrupted
            # Polled: no event tells us that another process got a signal.
            while True:
                if signal_pending(call.pid):
                    break
                await trio.sleep(POLL)
            interrupted = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await wait()
        nursery.cancel_scope.cancel()
    if interrupted:
        raise Interrupted(f"process {call.pid} got a signal while the server was away")


__all__ = ["POLL", "calling", "signal_pending", "wait_interruptibly"]
