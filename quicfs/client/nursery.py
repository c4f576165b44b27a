"""A trio nursery that raises the error, not a group of one.

trio wraps whatever escapes a nursery in an ExceptionGroup. Our callers expect the meaning
(``SMBError``, ``ConnectionLost``), so a group is collapsed to its first meaningful leaf.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


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
        leaf = first_leaf(group)
        if isinstance(leaf, trio.Cancelled):
            raise
        raise leaf from None
