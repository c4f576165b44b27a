"""Which directory leases count (client/dirleases.py): granted with Read and Handle,
no break come or waiting, on the connection of now, younger than TRUST; at most
MAX_HELD; a directory's attributes need its parent's lease too."""

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
        self.waiting: set[bytes] = set()

    def watch(self, key, callback) -> None:
        self.watched[key] = callback

    def unwatch(self, key) -> None:
        self.watched.pop(key, None)

    def pending(self, key) -> bool:
        return key in self.waiting


def _conn():
    return SimpleNamespace(params=SimpleNamespace(
        capabilities=Capabilities.DIRECTORY_LEASING))


def _take(dl: DirectoryLeases, path: str,
          state: LeaseState = dirleases.WANTED) -> tuple[dirleases.Held | None, _Handle]:
    pending, context = dl.request(path)
    handle = _Handle(state, context.lease_key)
    return dl.adopt(pending, handle), handle  # type: ignore[arg-type]


async def _settled() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_a_lease_counts_until_a_break_or_a_new_connection():
    tree = SimpleNamespace(conn=_conn())
    leases = _Leases()
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, leases, nursery)  # type: ignore[arg-type]
        assert dl.offered
        root, _ = _take(dl, "")
        d, _ = _take(dl, "d")
        child, handle = _take(dl, "d/e")
        assert root is not None and d is not None and child is not None
        assert dl.alive(root) and dl.alive(d) and dl.alive(child)
        later = trio.current_time() + 1
        assert dl.covers("d/e", later)
        assert not dl.covers("d/e", child.since - 1)  # learnt before the lease
        assert not dl.covers("", later)  # the mount's top: its parent is not ours
        key = dl.parent_key("d/e/f")
        assert key == child.key and dl.parent_key("d/e/g") == key  # one key a directory
        broken = dl.broken
        d_handle = d.handle
        leases.waiting.add(d.key)  # a break of "d" has come, not yet handled
        assert not dl.alive(d) and dl.alive(child)  # (a rename above breaks its own)
        assert dl.broken == broken + 1 and d.key in leases.watched
        assert not d_handle.closed  # closed by the break's handler, a moment later
        await leases.watched[d.key](LeaseState.NONE)
        assert d_handle.closed and d.key not in leases.watched
        assert dl.broken == broken + 1  # one break, counted once
        leases.waiting.clear()
        await leases.watched[child.key](LeaseState.NONE)  # a break handled at once
        assert handle.closed and not dl.alive(child) and dl.broken == broken + 2
        assert not dl.covers("d/e", later)
        assert dl.parent_key("d/e/f") == key  # kept: what is open under it breaks none
        tree.conn = _conn()  # reconnected
        assert not dl.alive(root)
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
        pending, context = dl.request("f")
        leases.waiting.add(context.lease_key)  # come, not yet handled
        waiting = _Handle(dirleases.WANTED, context.lease_key)
        assert dl.adopt(pending, waiting) is None  # type: ignore[arg-type]
        await _settled()
        assert handle.closed and early.closed and waiting.closed
        assert dl.held == 0 and leases.watched == {}


async def test_our_rename_lets_go_beneath_and_takes_nothing_there_meanwhile():
    tree = SimpleNamespace(conn=_conn())
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, _Leases(), nursery)  # type: ignore[arg-type]
        _, below = _take(dl, "p/c")
        _, beside = _take(dl, "pq")
        in_flight, context = dl.request("p/c/d")
        old_key = dl.parent_key("p/c/x")
        async with dl.letting_go("p"):
            assert below.closed and not beside.closed
            assert not dl.may_lease("p/c") and dl.may_lease("pq/c")
            assert dl.adopt(in_flight, _Handle(dirleases.WANTED, context.lease_key)) \
                is None  # type: ignore[arg-type]
        assert dl.may_lease("p/c")
        assert dl.parent_key("p/c/x") != old_key  # a new directory there: a new key


async def test_trusted_for_trust_seconds_at_most(monkeypatch):
    monkeypatch.setattr(dirleases, "TRUST", 0.05)
    tree = SimpleNamespace(conn=_conn())
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, _Leases(), nursery)  # type: ignore[arg-type]
        held, handle = _take(dl, "")
        assert held is not None and dl.alive(held)
        await trio.sleep(0.06)
        assert not dl.alive(held)
        await _settled()
        assert handle.closed


async def test_at_most_max_held_the_least_recently_used_let_go(monkeypatch):
    monkeypatch.setattr(dirleases, "MAX_HELD", 2)
    tree = SimpleNamespace(conn=_conn())
    async with trio.open_nursery() as nursery:
        dl = DirectoryLeases(tree, _Leases(), nursery)  # type: ignore[arg-type]
        a, ha = _take(dl, "")
        _take(dl, "b")
        assert a is not None and dl.current("") is a  # "" used: "b" is the oldest
        _take(dl, "c")
        await _settled()
        assert dl.current("b") is None and dl.current("") is a and not ha.closed


def test_without_a_nursery_or_the_servers_word_none_is_asked_for():
    tree = SimpleNamespace(conn=SimpleNamespace(params=SimpleNamespace(
        capabilities=Capabilities.LEASING)))
    nursery = SimpleNamespace()  # never used: nothing is taken
    assert not DirectoryLeases(tree, _Leases(), nursery).offered  # type: ignore[arg-type]
    assert DirectoryLeases(tree, _Leases(), nursery).parent_key("d/f") is None  # type: ignore[arg-type]
    tree.conn = _conn()
    assert DirectoryLeases(tree, _Leases(), nursery).offered  # type: ignore[arg-type]
    assert not DirectoryLeases(tree, _Leases(), None).offered  # type: ignore[arg-type]
