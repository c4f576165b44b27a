"""Read-ahead for one open file: when the kernel reads sequentially, the next chunks are
already on their way (several READs in flight), so a stream of small FUSE reads becomes a
few large SMB READs.

The cache lives only as long as the open handle (close-to-open consistency, as cifs.ko
without a lease) and is dropped at once when anything writes or truncates the file
through this mount.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from quicfs.client.open import Open

CHUNK = 1024 * 1024
WINDOW = 4


@dataclass(eq=False)
class _Chunk:
    start: int
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes = b""
    error: BaseException | None = None


class ReadAhead:
    def __init__(self, handle: Open, nursery: trio.Nursery, *, chunk: int = CHUNK,
                 window: int = WINDOW) -> None:
        self.handle = handle
        self.nursery = nursery
        self.chunk = max(65536, min(chunk, handle.max_read))
        self.window = window
        self.size_hint = handle.size
        self._chunks: dict[int, _Chunk] = {}
        self._next = 0

    def invalidate(self) -> None:
        self._chunks.clear()
        self._next = -1  # the next read starts afresh

    async def read(self, offset: int, size: int) -> bytes:
        sequential = offset == self._next or (offset == 0 and self._next <= 0)
        self._next = offset + size
        if not sequential:
            self._chunks.clear()
            return await self.handle.read(offset, size)
        c = self.chunk
        first = offset // c * c
        for i in range(self.window):
            start = first + i * c
            if start not in self._chunks and (i == 0 or start < max(self.size_hint, 1)):
                self._schedule(start)
        out = bytearray()
        pos, end = offset, offset + size
        while pos < end:
            start = pos // c * c
            chunk = self._chunks.get(start)
            if chunk is None:
                chunk = self._schedule(start)
            await chunk.done.wait()
            if chunk.error is not None:
                self._chunks.pop(start, None)
                raise chunk.error
            piece = chunk.data[pos - start : end - start]
            out += piece
            self.size_hint = max(self.size_hint, start + len(chunk.data))
            if len(chunk.data) < c or not piece:
                break  # end of file
            pos += len(piece)
        for start in [s for s in self._chunks if s + c <= offset]:
            del self._chunks[start]
        return bytes(out)

    def _schedule(self, start: int) -> _Chunk:
        chunk = _Chunk(start)
        self._chunks[start] = chunk
        self.nursery.start_soon(self._fetch, chunk)
        return chunk

    async def _fetch(self, chunk: _Chunk) -> None:
        try:
            chunk.data = await self.handle.read(chunk.start, self.chunk)
        except Exception as exc:
            chunk.error = exc
        finally:
            chunk.done.set()
