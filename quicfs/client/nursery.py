"""A trio nursery that raises the error, not a group of one.

trio wraps whatever escapes a nursery in an ExceptionGroup. Our callers expect the meaning
(``SMBError``, ``ConnectionLost``), so a group is collapsed to its first meaningful leaf.

A cancellation is never collapsed away: when an outer scope was cancelled and a child
failed with one of our errors at the same moment (a read on a stalled connection that is
given up), the Cancelled goes on. Raised in its place, the error would escape the scope
that asked to stop (and end whatever holds it), and a caller that retries on that error
would go round without end, never seeing the cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from quicfs.errors import QuicfsError


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The first leaf that is not a Cancelled, or the first leaf at all."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return leaves[0]


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        cancelled, errors = group.split(trio.Cancelled)
        if errors is None:
            raise
        if cancelled is not None and errors.split(QuicfsError)[1] is None:
            raise cancelled from None  # (a bug of ours, though, is not hidden)
        raise first_leaf(errors) from None
