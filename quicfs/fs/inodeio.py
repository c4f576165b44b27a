"""One open inode's reads and writes: the only place reads meet writes on their way.

Each handle the kernel holds on a file has its own read-ahead (readahead.py) and its own
write-behind (writeback.py), as each has its own SMB Open; neither knows of the other.
The file's ``InodeIO``, one per inode with handles open here, holds every handle of it,
and so both, and decides what a read sees of what was written:

- while the lease's Read caching holds (the caller gives the file's size as our writes
  made it), a read of bytes a write still held here covers is answered from that write,
  with no round trip; one that no such write touches need not wait for them (past the
  server's end of file and before our writes lies a hole: zeros); any other read first
  waits until what is gathered has reached the server;
- a write is laid over every handle's read-ahead of the file, chunks held and chunks on
  their way (a program that writes and reads by turns, mmap faults beside pwrite,
  xfstests generic/346, reads from here rather than the server);
- a chunk asked of the server while writes are on their way may come back without them
  (the server may answer the READ first): the read that asks for it carries an
  ``Overlay`` of them, which every write made here during that read joins, to be laid
  over it when it lands;
- a write that fails, and a truncate, make every read-ahead of the file stale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quicfs.client.open import FileStat
from quicfs.fs.readahead import Overlay
from quicfs.fs.writeback import WriteBehind

if TYPE_CHECKING:
    from quicfs.fs.handles import FileHandle


@dataclass(eq=False, slots=True)
class Held:
    """Attributes of an open file as the server gave them, and its size and allocation
    as our writes since have made them (updated at every write: kept cheap). Answered
    without a round trip while the lease's Read caching holds (cifs.ko trusts cached
    attributes under a read lease the same way)."""

    st: FileStat
    size: int
    allocation: int

    def wrote(self, off: int, n: int) -> None:
        end = off + n
        if end > self.size:  # the server allocates what a write adds, not holes before
            self.allocation += -(-min(n, end - self.size) // 4096) * 4096
            self.size = end

    def stat(self) -> FileStat:
        # Its times are the server's: AttrCache.entry moves mtime and ctime by our writes.
        return dataclasses.replace(self.st, size=self.size, allocation_size=self.allocation)


@dataclass(eq=False, slots=True)
class InodeIO:
    """An inode with handles open here: its handles, the attributes held while they are
    open, and every read and write through them."""

    handles: dict[int, FileHandle] = field(default_factory=dict)
    held: Held | None = None
    #: The overlays of reads under way (read-ahead may ask the server for chunks for
    #: them): every write made here joins them.
    _overlays: list[Overlay] = field(default_factory=list, init=False)

    # ------------------------------------------------------------------ reads
    async def read(self, handle: FileHandle, off: int, size: int, eof: int | None
                   ) -> bytes:
        """Bytes ``off..off+size`` through ``handle``; ``eof``: the file's size as our
        writes made it, given while the lease's Read caching holds (None otherwise)."""
        if eof is not None:
            pending = self.writers()
            end = min(off + size, eof)
            if pending and end <= off:
                return b""
            if len(pending) == 1:  # of two writers', which is newer is not known
                data = pending[0].peek(off, end)
                if data is not None:
                    return data
            if pending and not any(w.overlaps(off, end) for w in pending):
                # Nothing on its way touches these bytes: no need to wait for it. Past
                # the server's end of file and before our writes lies a hole: zeros.
                data = await self._read_ahead(handle, off, end - off, pending)
                return data.ljust(end - off, b"\0")
        await self.drain()
        return await self._read_ahead(handle, off, size, self.writers())

    async def _read_ahead(self, handle: FileHandle, off: int, size: int,
                          pending: list[WriteBehind]) -> bytes:
        # The gathered run is the write-behind's buffer itself, not a copy: it only
        # grows at its end, by writes that join the overlay after it (laid again there),
        # and once taken it is replaced, never changed.
        overlay = Overlay(None if len(pending) > 1
                          else [run for w in pending for run in w.runs()])
        self._overlays.append(overlay)
        try:
            return await handle.reader.read(off, size, overlay)
        finally:
            self._overlays.remove(overlay)

    def writers(self) -> list[WriteBehind]:
        """The writers holding writes the server has not answered yet."""
        return [h.writer for h in self.handles.values()
                if h.writer is not None and h.writer.pending]

    # ------------------------------------------------------------------ writes
    async def write(self, handle: FileHandle, off: int, buf: bytes) -> int:
        """Write ``buf`` at ``off`` through ``handle`` (gathered by its write-behind, or at
        once when it has none), laid first over what every handle read ahead."""
        for h in self.handles.values():
            h.reader.wrote(off, buf)
        if self._overlays:
            # A second handle's writes on their way: their order on the server is not
            # known, so no chunk asked for now may keep what it is told.
            mixed = handle.writer is not None and any(
                w is not handle.writer for w in self.writers())
            for overlay in self._overlays:
                if mixed:
                    overlay.runs = None
                elif overlay.runs is not None:
                    overlay.runs.append((off, buf))
        try:
            if handle.writer is None:
                n = await handle.open.write(off, buf)
            else:
                n = await handle.writer.write(off, buf)
        except BaseException:
            self.invalidate()  # what was laid over the read-ahead is not sent
            raise
        if self.held is not None:
            self.held.wrote(off, n)
        return n

    async def drain(self) -> None:
        """Before anything looks at the file's size or data, what we gathered goes out."""
        for handle in list(self.handles.values()):
            if handle.behind is not None:
                await handle.behind.wait()  # its error is its own file's close to tell
            elif handle.pending:
                assert handle.writer is not None
                await handle.writer.drain()

    def invalidate(self) -> None:
        """A truncate through any handle (or a write that failed) makes read-ahead of
        the file stale."""
        for handle in self.handles.values():
            handle.reader.invalidate()
