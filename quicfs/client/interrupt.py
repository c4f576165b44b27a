"""Waits for a lost server that a signal to the waiting program cuts short.

A hard mount waits for its server without end (link.py), yet a program stuck on it must
stay killable, and a program that handles a signal must get its EINTR. The layer that
knows the program (the FUSE edge, fs/caller.py) names each call's caller with
``calling``: a test of whether it was signalled, polled every POLL seconds by the places
that wait for the server (``wait_interruptibly``). A signal ends the wait with Interrupted
(EINTR). As NFS and cifs.ko hard mounts, only the waiting ends: nothing sent is taken
back, and work the mount does in the background (gathered writes) goes on waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import NamedTuple

import trio

from quicfs.errors import Interrupted

POLL = 0.2

class _Call(NamedTuple):
    #: Whether the caller got a signal that ends its wait.
    signalled: Callable[[], bool]
    #: Who the caller is, for the error.
    who: str
    #: The task serving the call: tasks it starts inherit the context, not the caller.
    task: trio.lowlevel.Task


_CALLER: ContextVar[_Call | None] = ContextVar("quicfs_caller", default=None)


class calling:
    """Within this, the current task serves a call for a caller whom ``signalled`` tells
    about (None: nobody to interrupt it).

    Used as a function; a class, not a generator, as it wraps every FUSE request."""

    __slots__ = ("_signalled", "_token", "_who")

    def __init__(self, signalled: Callable[[], bool] | None, who: str = "") -> None:
        self._signalled = signalled
        self._who = who

    def __enter__(self) -> None:
        call = None
        if self._signalled is not None:
            call = _Call(self._signalled, self._who, trio.lowlevel.current_task())
        self._token = _CALLER.set(call)

    def __exit__(self, *exc: object) -> None:
        _CALLER.reset(self._token)


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
                if call.signalled():
                    break
                await trio.sleep(POLL)
            interrupted = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await wait()
        nursery.cancel_scope.cancel()
    if interrupted:
        raise Interrupted(f"{call.who} got a signal while the server was away")


__all__ = ["POLL", "calling", "wait_interruptibly"]
