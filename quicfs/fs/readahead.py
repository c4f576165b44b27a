"""Read-ahead for one open file: when the kernel reads sequentially, the next chunks are
already on their way (several READs in flight), so a stream of small FUSE reads becomes a
few large SMB READs.

The cache lives only as long as the open handle (close-to-open consistency, as cifs.ko
without a lease) and is dropped at once when the file is truncated through this mount.
What this mount writes is laid over the chunks instead, as it is told (``wrote``): a
chunk still on its way gets it laid over it when it lands, after the writes that were
not yet on the server when it was asked for (the ``Overlay`` a read brings), so its bytes
are the file's as this mount has made it. Which writes those are is for the file's
InodeIO (inodeio.py) to say: read-ahead knows nothing of write-behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from quicfs.client.depth import Depth
from quicfs.client.inorder import InOrder, Turn
from quicfs.client.open import Open

CHUNK = 1024 * 1024
#: Chunks read ahead: where a file starts, and how far the window may grow to fill a
#: long path (client/depth.py). 16 MiB per file open for reading at most.
WINDOW = 4
MAX_WINDOW = 16
#: Bytes read with the CREATE of a file opened for reading (Share.open ``head``): a
#: small file read whole then costs the open's round trip alone.
HEAD = 64 * 1024


@dataclass(eq=False, slots=True)
class Overlay:
    """Writes made here that a READ sent now may not see, oldest first, to be laid over
    what it brings back; None when their order is not known (two handles' writes on
    their way: the server may apply them either way). Kept up to date by the file's
    InodeIO for as long as the read that carries it lasts."""

    runs: list[tuple[int, bytes | bytearray]] | None


@dataclass(eq=False)
class _Chunk:
    start: int
    size: int
    done: trio.Event = field(default_factory=trio.Event)
    data: bytearray = field(default_factory=bytearray)
    error: BaseException | None = None
    #: Writes to lay over the data when it lands, in order.
    later: list[tuple[int, bytes | bytearray]] = field(default_factory=list)
    #: False when writes on their way could not be ordered: the chunk serves the read
    #: that asked for it (whose bytes no such write touches) and goes.
    keep: bool = True


class ReadAhead:
    def __init__(self, handle: Open, nursery: trio.Nursery, *, chunk: int = CHUNK,
                 window: int = WINDOW, max_window: int = MAX_WINDOW) -> None:
        self.handle = handle
        self.nursery = nursery
        self.chunk = max(65536, min(chunk, handle.max_read))
        self.window = Depth(window, max_window)
        self.size_hint = handle.size
        self._chunks: dict[int, _Chunk] = {}
        #: Reads that are not read ahead, on their way: they see writes too.
        self._direct: set[_Chunk] = set()
        self._order = InOrder()
        self._next = 0
        #: The file's first bytes, read with its CREATE (Share.open ``head``): reads
        #: within them, or past them when they are the whole file, cost no round trip.
        self._head = handle.take_head()
        self._head_whole = self._head is not None and len(self._head) >= handle.size

    def invalidate(self) -> None:
        self._chunks.clear()
        self._head = None
        self._next = -1  # the next read starts afresh

    def wrote(self, offset: int, data: bytes | bytearray) -> None:
        """This mount wrote ``data`` at ``offset`` (perhaps not on the server yet)."""
        self.size_hint = max(self.size_hint, offset + len(data))
        self._head = None  # the chunks below lay writes over what they hold
        if not self._chunks and not self._direct:
            return  # the common case of a writer that does not read: nothing to lay over
        for chunk in [*self._chunks.values(), *self._direct]:
            if not chunk.done.is_set():
                chunk.later.append((offset, data))
            elif chunk.error is None:
                self._lay(chunk, offset, data)

    @staticmethod
    def _lay(chunk: _Chunk, offset: int, data: bytes | bytearray) -> None:
        if offset + len(data) <= chunk.start:
            return  # wholly before: no byte or size of ours changes
        c, buf = chunk.size, chunk.data
        lo = max(offset, chunk.start) - chunk.start
        hi = min(offset + len(data), chunk.start + c) - chunk.start
        if lo >= c:
            # Wholly after: the file now reaches past this chunk, so a short one (the
            # end of file when read) runs on with the zeros of a hole.
            buf.extend(bytes(c - len(buf)))
            return
        if len(buf) < lo:
            buf.extend(bytes(lo - len(buf)))  # a hole before the written bytes
        buf[lo:hi] = data[chunk.start + lo - offset:chunk.start + hi - offset]
        if offset + len(data) > chunk.start + c and len(buf) < c:
            buf.extend(bytes(c - len(buf)))

    async def read(self, offset: int, size: int, overlay: Overlay | None = None) -> bytes:
        """Bytes ``offset..offset+size`` (fewer at the end of file); a chunk asked of the
        server for them gets ``overlay``'s writes laid over it (None: no writes)."""
        head = self._head
        if head is not None and (self._head_whole or offset + size <= len(head)):
            self._next = offset + size
            return head[offset:offset + size]
        c = self.chunk
        first = offset // c * c
        # Sequential: at or a little past where the last read ended (the kernel skips
        # pages it has), or within a chunk held here.
        sequential = first in self._chunks or 0 <= offset - self._next < c \
            or (offset == 0 and self._next <= 0)
        self._next = offset + size
        if not sequential:
            self._chunks.clear()
            return await self._read_direct(offset, size, overlay)
        for i in range(self.window.value):
            start = first + i * c
            if start not in self._chunks and (i == 0 or start < max(self.size_hint, 1)):
                self._schedule(start, overlay)
        out = bytearray()
        pos, end = offset, offset + size
        while pos < end:
            start = pos // c * c
            chunk = self._chunks.get(start)
            if chunk is None:
                chunk = self._schedule(start, overlay)
            await chunk.done.wait()
            if chunk.error is not None:
                self._chunks.pop(start, None)
                raise chunk.error
            piece = chunk.data[pos - start : end - start]
            out += piece
            self.size_hint = max(self.size_hint, start + len(chunk.data))
            if not chunk.keep:
                self._chunks.pop(start, None)
            if len(chunk.data) < c or not piece:
                break  # end of file
            pos += len(piece)
        for start in [s for s in self._chunks if s + c <= offset]:
            del self._chunks[start]
        return bytes(out)

    async def _read_direct(self, offset: int, size: int, overlay: Overlay | None) -> bytes:
        chunk = _Chunk(offset, size, keep=False)
        self._overlay(chunk, overlay)
        self._direct.add(chunk)
        try:
            await self._fetch(chunk)
        finally:
            self._direct.discard(chunk)
        if chunk.error is not None:
            raise chunk.error
        return bytes(chunk.data[:size])

    @staticmethod
    def _overlay(chunk: _Chunk, overlay: Overlay | None) -> None:
        if overlay is None:
            return
        if overlay.runs is None:
            chunk.keep = False
        else:
            chunk.later.extend(overlay.runs)

    def _schedule(self, start: int, overlay: Overlay | None) -> _Chunk:
        chunk = _Chunk(start, self.chunk)
        self._overlay(chunk, overlay)
        self._chunks[start] = chunk
        self.nursery.start_soon(self._fetch, chunk, self._order.place())
        return chunk

    async def _fetch(self, chunk: _Chunk, turn: Turn | None = None) -> None:
        """Read ``chunk``: a read-ahead one (``turn`` given) in its place in line, its
        answer time telling the window how full the path is; a direct one at once, and
        untimed (a small random read says nothing of the path's depth)."""
        try:
            if turn is not None:
                await turn.wait()  # the READs go out by offset (inorder.py)
            sent = trio.current_time()
            chunk.data = bytearray(await self.handle.read(chunk.start, chunk.size))
            if turn is not None:
                self.window.answered(trio.current_time() - sent)
            for offset, data in chunk.later:
                self._lay(chunk, offset, data)
        except Exception as exc:
            chunk.error = exc
        finally:
            chunk.later = []
            chunk.done.set()
