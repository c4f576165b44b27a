"""Which directory leases count (client/dirleases.py): granted with Read and Handle,
not broken, on the connection of now; at most MAX_HELD."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from quicfs.client import dirleases
from quicfs.client.dirleases import DirectoryLeases
from quicfs.smb2.constants import Capabilities, LeaseState


class _Handle:
    def __init__(self, state: LeaseState, key: bytes) -> None:
        self.lease_state = state
        self.lease_key = key
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _Leases:
    def __init__(self) -> None:
        self.watched: dict[bytes, object] = {}

    def watch(self, key, callback) -> None:
        self.watched[key] = callback

    def unwatch(self, key) -> None:
        self.watched.pop(key, None)


def _conn():
    return SimpleNamespace(params=SimpleNamespace(
        capabilities=Capabilities.DIRECTORY_LEASING))


def _take(dl: DirectoryLeases, path: str,
          state: LeaseState = dirleases.WANTED) -> tuple[dirleases.Held | None, _Handle]:
    pending, context = dl.request(path)
    handle = _Handle(state, context.lease_key)
    return dl.adopt(pending, handle), handle  # type: ignore[arg-type]


async def test_a_lease_counts_until_a_break_or_a_new_connection():
    tree = SimpleNamespace(conn=_conn())
    leases = _Leases()
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, leases, nursery)  # type: ignore[arg-type]
        assert dl.offered
        parent, _ = _take(dl, "d")
        child, handle = _take(dl, "d/e")
        assert parent is not None and child is not None
        later = trio.current_time() + 1
        assert dl.covers("d/e", later)
        assert not dl.covers("d/e", child.since - 1)  # learnt before the lease
        assert not dl.covers("d", later)  # its parent (the root) is not leased
        assert dl.parent_key("d/e/f") == child.key
        await leases.watched[child.key](LeaseState.NONE)  # a break
        assert handle.closed and not dl.alive(child)
        assert not dl.covers("d/e", later)
        assert dl.parent_key("d/e/f") is None
        tree.conn = _conn()  # reconnected
        assert not dl.alive(parent)
        assert dl.held == 0


async def test_less_than_read_and_handle_or_a_break_before_adoption_keeps_nothing():
    tree = SimpleNamespace(conn=_conn())
    leases = _Leases()
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, leases, nursery)  # type: ignore[arg-type]
        held, handle = _take(dl, "d", LeaseState.READ_CACHING)
        assert held is None
        pending, context = dl.request("e")
        await leases.watched[context.lease_key](LeaseState.NONE)  # before its answer ran
        early = _Handle(dirleases.WANTED, context.lease_key)
        assert dl.adopt(pending, early) is None  # type: ignore[arg-type]
        await trio.testing.wait_all_tasks_blocked()
        assert handle.closed and early.closed
        assert dl.held == 0 and leases.watched == {}


async def test_at_most_max_held_the_least_recently_used_let_go(monkeypatch):
    monkeypatch.setattr(dirleases, "MAX_HELD", 2)
    tree = SimpleNamespace(conn=_conn())
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, _Leases(), nursery)  # type: ignore[arg-type]
        a, ha = _take(dl, "a")
        _take(dl, "b")
        assert a is not None and dl.current("a") is a  # "a" used: "b" is the oldest
        _take(dl, "c")
        await trio.testing.wait_all_tasks_blocked()
        assert dl.current("b") is None and dl.current("a") is a and not ha.closed
        await dl.release("a")
        assert ha.closed and dl.current("a") is None


def test_without_a_nursery_or_the_servers_word_none_is_asked_for():
    tree = SimpleNamespace(conn=SimpleNamespace(params=SimpleNamespace(
        capabilities=Capabilities.LEASING)))
    nursery = SimpleNamespace()  # never used: nothing is taken
    assert not DirectoryLeases(tree, _Leases(), nursery).offered  # type: ignore[arg-type]
    tree.conn = _conn()
    assert DirectoryLeases(tree, _Leases(), nursery).offered  # type: ignore[arg-type]
    assert not DirectoryLeases(tree, _Leases(), None).offered  # type: ignore[arg-type]
