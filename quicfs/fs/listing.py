"""One open directory as the kernel reads it.

A huge directory streams: opendir costs one CREATE, and each readdir fetches server pages
(QUERY_DIRECTORY, 64 KiB each) only as far as the kernel has read, so `ls` of a
million-entry directory starts at once and memory grows with what was read. The entries
read so far stay, because the kernel may come back to any offset it was given (seekdir,
or a readdir whose buffer filled up). So a listing is bounded: past the mount's
``max_dir_entries`` (500,000 by default, ~490 bytes each) it fails with ENOMEM, since a
server whose listing never ends would otherwise take all memory; a bigger directory
needs a bigger bound.
"""

from __future__ import annotations

import logging

import trio

from quicfs.client.directory import DirectoryReader
from quicfs.client.open import FileStat
from quicfs.errors import QuicfsError
from quicfs.fs.screen import Screen

log = logging.getLogger("quicfs.fs")

Entry = tuple[str, FileStat]


class Listing:
    def __init__(self, path: str, entries: list[Entry], reader: DirectoryReader | None,
                 *, started: float, generation: int, screen: Screen | None = None,
                 nursery: trio.Nursery | None = None) -> None:
        self.path = path
        #: Where the directory's CLOSE goes once its last page is here: nobody waits
        #: for it (without one, the readdir that found the end does).
        self.nursery = nursery
        self.screen = screen
        self.entries = entries
        self.reader = reader
        #: When and at which change generation of the mount the listing began (its reuse
        #: is bounded by both).
        self.started = started
        self.generation = generation

    @property
    def complete(self) -> bool:
        return self.reader is None

    async def fill(self, index: int) -> bool:
        """Fetch pages until entry ``index`` is here; False once past the last entry."""
        while self.reader is not None and index >= len(self.entries):
            page = await self.reader.next_page()
            if not page:
                if self.nursery is not None:
                    reader, self.reader = self.reader, None
                    self.nursery.start_soon(_close, self.path, reader)
                else:
                    await self.close()
            elif self.screen is not None:
                # A bad name costs its entry, never the listing (fs/screen.py).
                self.entries.extend((e.name, e) for e in self.screen.names(self.path, page))
            else:
                self.entries.extend((e.name, e) for e in page)
        return index < len(self.entries)

    async def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            await _close(self.path, reader)


async def _close(path: str, reader: DirectoryReader) -> None:
    try:
        with trio.CancelScope(shield=True):
            await reader.handle.close()
    except QuicfsError as exc:
        log.debug("closing directory %s: %s", path or "/", exc)


__all__ = ["Entry", "Listing"]
