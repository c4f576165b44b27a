"""open_nursery collapses a group to its meaning, and never collapses a cancellation away
(client/nursery.py)."""

from __future__ import annotations

import pytest
import trio

from quicfs.client.nursery import open_nursery
from quicfs.errors import ConnectionLost


async def _fail_now() -> None:
    raise ConnectionLost("connection to test lost")


async def test_a_childs_error_is_raised_alone() -> None:
    with pytest.raises(ConnectionLost, match="connection to test lost"):
        async with open_nursery() as nursery:
            nursery.start_soon(_fail_now)
            await trio.sleep_forever()


async def test_a_bug_is_raised_alone() -> None:
    async def bug() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        async with open_nursery() as nursery:
            nursery.start_soon(bug)
            await trio.sleep_forever()


async def test_a_cancellation_that_comes_with_an_error_ends_its_scope() -> None:
    """A caller that retries on ConnectionLost (as Tree does) inside a scope that is
    cancelled: the child fails at once each time while the body is cancelled. With the
    Cancelled collapsed into the ConnectionLost the loop went round for ever, the scope's
    deadline never heard of; now the scope ends it."""
    rounds = 0
    with trio.move_on_after(0.1) as scope:
        while rounds < 10_000:
            rounds += 1
            try:
                async with open_nursery() as nursery:
                    nursery.start_soon(_fail_now)
                    await trio.sleep_forever()
            except ConnectionLost:
                continue
    assert scope.cancelled_caught
    assert rounds < 10_000
