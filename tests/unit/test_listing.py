"""A directory listing streams: pages are fetched only as far as readdir has read."""

from __future__ import annotations

from quicfs.client.open import FileStat
from quicfs.fs.listing import Listing
from quicfs.smb2.constants import FileAttributes


def _stat(name: str) -> FileStat:
    return FileStat(name, 0, 0, FileAttributes.NORMAL, 0, 0, 0, 0)


class _Handle:
    closed = 0

    async def close(self) -> None:
        self.closed += 1


class _Pages:
    """Stands in for DirectoryReader: ``pages`` pages of ``size`` entries each."""

    def __init__(self, pages: int, size: int) -> None:
        self.handle = _Handle()
        self.fetched = 0
        self._pages = [[_stat(f"p{p}e{i}") for i in range(size)] for p in range(pages)]

    async def next_page(self) -> list[FileStat]:
        if self.fetched == len(self._pages):
            return []
        self.fetched += 1
        return self._pages[self.fetched - 1]


async def test_pages_are_fetched_only_as_far_as_read() -> None:
    reader = _Pages(pages=100, size=1000)
    listing = Listing("big", [], reader, started=0.0, generation=0)  # type: ignore[arg-type]
    assert await listing.fill(0)
    assert reader.fetched == 1
    assert await listing.fill(2500)
    assert reader.fetched == 3 and len(listing.entries) == 3000
    assert listing.entries[2500][0] == "p2e500"
    assert not listing.complete and reader.handle.closed == 0


async def test_the_end_closes_the_directory_once() -> None:
    reader = _Pages(pages=2, size=3)
    listing = Listing("d", [], reader, started=0.0, generation=0)  # type: ignore[arg-type]
    assert await listing.fill(5)
    assert not await listing.fill(6)
    assert listing.complete and reader.handle.closed == 1
    await listing.close()
    assert reader.handle.closed == 1
    assert [name for name, _ in listing.entries] == ["p0e0", "p0e1", "p0e2",
                                                     "p1e0", "p1e1", "p1e2"]


async def test_with_a_nursery_the_end_closes_the_directory_behind() -> None:
    """readdir that finds the end does not wait for the directory's CLOSE."""
    import trio

    reader = _Pages(pages=1, size=2)
    async with trio.open_nursery() as nursery:
        listing = Listing("d", [], reader, started=0.0, generation=0,  # type: ignore[arg-type]
                          nursery=nursery)
        assert not await listing.fill(2)
        assert listing.complete and reader.handle.closed == 0  # not yet: behind
    assert reader.handle.closed == 1
    await listing.close()
    assert reader.handle.closed == 1
