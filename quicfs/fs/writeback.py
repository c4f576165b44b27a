"""Write gathering for one open file: the kernel's small FUSE writes become large SMB
WRITEs (up to the negotiated size), several in flight, like cifs.ko's write-behind.

An error of a write in the background is kept and reported at the next operation on the
handle, at fsync and at close, so it reaches the application (as NFS and cifs.ko report
it) and data is never silently lost.
"""

from __future__ import annotations

import trio

from quicfs.client.open import Open

#: Gather up to this much before sending; several such writes may be in flight.
GATHER = 1024 * 1024
DEPTH = 4


class WriteBehind:
    def __init__(self, handle: Open, nursery: trio.Nursery, *, gather: int = GATHER,
                 depth: int = DEPTH) -> None:
        self.handle = handle
        self.nursery = nursery
        self.gather = max(4096, min(gather, handle.max_write))
        self._slots = trio.Semaphore(depth)
        self._offset = 0
        self._buf = bytearray()
        self._inflight = 0
        self._idle = trio.Event()
        self._idle.set()
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._inflight > 0

    async def write(self, offset: int, data: bytes) -> int:
        self.raise_error()
        if self._buf and offset == self._offset + len(self._buf):
            self._buf += data
        else:
            await self._submit()
            self._offset, self._buf = offset, bytearray(data)
        if len(self._buf) >= self.gather:
            await self._submit()
        return len(data)

    async def _submit(self) -> None:
        if not self._buf:
            return
        offset, data = self._offset, bytes(self._buf)
        self._buf = bytearray()
        await self._slots.acquire()
        self._inflight += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self.nursery.start_soon(self._write, offset, data)

    async def _write(self, offset: int, data: bytes) -> None:
        try:
            await self.handle.write(offset, data)
        except Exception as exc:
            if self.error is None:
                self.error = exc
        finally:
            self._slots.release()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def drain(self) -> None:
        """Send what is gathered and wait until the server has it all."""
        await self._submit()
        await self._idle.wait()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc
