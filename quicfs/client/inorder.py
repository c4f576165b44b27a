"""Requests made by sibling tasks go on the wire in the order the tasks were started.

Trio runs a batch of newly started tasks in either order (it reverses a batch at random).
On QUIC's one ordered stream a request that goes out last is answered last: when a window
of READs left with offset 0 last, the first byte of a transfer waited for the whole window
(~27 s for 8 MiB at 0.3 MB/s, a 50 ms path with 2 % loss). Each task here waits for the
one started before it to reach its request; the next runs only once this one yields inside
its request, after the message is queued, and the send path keeps that order.
"""

from __future__ import annotations

import trio


class InOrder:
    def __init__(self) -> None:
        self._last = trio.Event()
        self._last.set()

    def place(self) -> Turn:
        """A place in line, taken when the task is started (not when it first runs)."""
        turn = Turn(self._last, trio.Event())
        self._last = turn.after
        return turn


class Turn:
    __slots__ = ("after", "before")

    def __init__(self, before: trio.Event, after: trio.Event) -> None:
        self.before = before
        self.after = after

    async def wait(self) -> None:
        """Return when the task before this one has reached its request. The next task
        is let go whatever happens here (a cancellation, an error), so none waits for
        ever."""
        try:
            await self.before.wait()
        finally:
            self.after.set()
