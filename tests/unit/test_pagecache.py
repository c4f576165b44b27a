"""PageCache's parked (deferred-close) handles: whatever happens to an inode's lease
bookkeeping, a parked handle stays where a rename or delete finds it, or is closed."""

from __future__ import annotations

import trio

from quicfs.fs.pagecache import PageCache
from quicfs.smb2.constants import LeaseState

RH = LeaseState.READ_CACHING | LeaseState.HANDLE_CACHING


class Leases:
    def watch(self, key: bytes, callback: object) -> None:
        pass

    def unwatch(self, key: bytes) -> None:
        pass


class Conn:
    closed = False


class Tree:
    conn = Conn()


class Handle:
    """An open under ``key`` whose CLOSE takes ``delay`` seconds to be answered."""

    tree = Tree()
    stale = False

    def __init__(self, name: str, key: bytes, delay: float = 0.0) -> None:
        self.name = name
        self.lease_key = key
        self.lease_state = RH
        self.delay = delay
        self.closed = False

    async def close(self) -> None:
        await trio.sleep(self.delay)
        self.closed = True


async def _nothing(inode: int) -> None:
    pass


async def test_a_handle_parked_while_a_rekey_closes_the_old_ones_is_not_lost():
    """rekey closes the old key's parked handles, which takes a round trip; a handle
    the kernel released meanwhile was parked under the record rekey then dropped: no
    rename or delete found it, and its file stayed open on the server (a deleted name
    pending, its directory not removable) until the park timer ran out."""
    inode = 7
    async with trio.open_nursery() as nursery:
        cache = PageCache(Leases(), nursery, hold=60, drain=_nothing,  # type: ignore[arg-type]
                          drop_pages=_nothing)
        key = cache.key(inode)
        slow, late = Handle("f", key, delay=0.05), Handle("f", key)
        for h in (slow, late):
            cache.opened(inode, h, reused=False)  # type: ignore[arg-type]
        await cache.release(inode, slow, writable=False)  # type: ignore[arg-type]
        assert cache.parked_inodes() == [inode]

        async def release_late() -> None:
            await trio.sleep(0.01)  # while slow's CLOSE is on its way
            await cache.release(inode, late, writable=False)  # type: ignore[arg-type]

        nursery.start_soon(release_late)
        await cache.rekey(inode)
        await trio.sleep(0.02)
        # Either closed, or parked where close_parked finds it.
        assert slow.closed
        await cache.close_parked(inode)
        assert late.closed
        nursery.cancel_scope.cancel()


async def test_one_create_at_a_time_under_an_inode_key():
    """Two CREATEs under one lease key may name two files (a rename in between); Samba
    4.17 never answers the second if the first waited for a break. So they take turns;
    a file not known yet gets a key of its own."""
    async with trio.open_nursery() as nursery:
        await _one_create_at_a_time(PageCache(Leases(), nursery, drain=_nothing,  # type: ignore[arg-type]
                                              drop_pages=_nothing))


async def _one_create_at_a_time(cache: PageCache) -> None:
    inside: list[int] = []
    overlapped = False

    async def create(inode: int) -> bytes:
        nonlocal overlapped
        async with cache.creating(inode) as key:
            overlapped |= inode in inside
            inside.append(inode)
            await trio.sleep(0.01)
            inside.remove(inode)
            return key

    keys: list[bytes] = []

    async def run(inode: int) -> None:
        keys.append(await create(inode))

    async with trio.open_nursery() as nursery:
        for inode in (5, 5, 5, 6):
            nursery.start_soon(run, inode)
    assert not overlapped
    assert keys.count(cache.key(5)) == 3 and keys.count(cache.key(6)) == 1
    async with cache.creating(None) as a, cache.creating(None) as b:
        assert a != b and cache.key(5) not in (a, b)
