"""Write gathering for one open file: the kernel's small FUSE writes become large SMB
WRITEs (up to the negotiated size), several in flight, like cifs.ko's write-behind.

An error of a write in the background is kept and reported at the next operation on the
handle, at fsync and at close, so it reaches the application (as NFS and cifs.ko report
it) and data is never silently lost.
"""

from __future__ import annotations

import errno

import trio

from quicfs.client.open import Open
from quicfs.errors import SMBError
from quicfs.smb2.info import SetInfoRequest

#: Gather up to this much before sending; several such writes may be in flight.
GATHER = 1024 * 1024
DEPTH = 4
#: In-flight data is counted in sixteenths of a gathered run, so many small scattered
#: writes (a page each, say) may be in flight where only a few large ones would.
SHARES = 16


class WriteBehind:
    """Gathers contiguous writes; sends each gathered run in the background.

    Every change to the gathered buffer happens between two awaits, so concurrent writers
    (AIO, threads on one descriptor) never lose each other's data; a run is counted in
    flight from the moment it leaves the buffer, so ``drain`` waits for it; and a run
    that overlaps one still in flight waits for it, so the server applies overlapping
    writes in the order they were made (it may run concurrent WRITEs in any order).
    """

    def __init__(self, handle: Open, nursery: trio.Nursery, *, gather: int = GATHER,
                 depth: int = DEPTH) -> None:
        self.handle = handle
        self.nursery = nursery
        self.gather = max(4096, min(gather, handle.max_write))
        self._share = max(1, self.gather // SHARES)
        self._total = depth * SHARES
        self._slots = trio.Semaphore(self._total)
        #: One sender takes its shares at a time: two taking turns could each hold part
        #: of what they need and wait for ever.
        self._taking = trio.Lock()
        self._offset = 0
        self._buf = bytearray()
        self._inflight = 0
        self._idle = trio.Event()
        self._idle.set()
        #: Runs being written, oldest first, each with the event its WRITE sets when
        #: answered.
        self._ranges: list[tuple[int, bytes, trio.Event]] = []
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._inflight > 0

    @property
    def unsent(self) -> int:
        """Bytes written here whose WRITE is not answered yet."""
        return len(self._buf) + sum(len(d) for _, d, _ in self._ranges)

    async def write(self, offset: int, data: bytes) -> int:
        self.raise_error()
        if self._buf and offset == self._offset + len(self._buf):
            self._buf += data
            full = self._take() if len(self._buf) >= self.gather else None
            if full is not None:
                await self._send(*full)
            return len(data)
        previous = self._take()
        self._offset, self._buf = offset, bytearray(data)
        full = self._take() if len(self._buf) >= self.gather else None
        for run in (previous, full):
            if run is not None:
                await self._send(*run)
        return len(data)

    def _take(self) -> tuple[int, bytes, trio.Event] | None:
        """Detach the gathered run (no await: nothing else touches the buffer meanwhile),
        count it in flight and queue its range behind the earlier ones."""
        if not self._buf:
            return None
        offset, data = self._offset, bytes(self._buf)
        self._buf = bytearray()
        self._inflight += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        done = trio.Event()
        self._ranges.append((offset, data, done))
        return offset, data, done

    async def _submit(self) -> None:
        run = self._take()
        if run is not None:
            await self._send(*run)

    async def _send(self, offset: int, data: bytes, done: trio.Event) -> None:
        end = offset + len(data)
        try:
            while True:
                mine = next(i for i, r in enumerate(self._ranges) if r[2] is done)
                earlier = [e for (a, d, e) in self._ranges[:mine]
                           if a < end and offset < a + len(d)]
                if not earlier:
                    break
                await earlier[0].wait()
            units = self._units(len(data))
            async with self._taking:
                for taken in range(units):
                    try:
                        await self._slots.acquire()
                    except BaseException:
                        for _ in range(taken):
                            self._slots.release()
                        raise
        except BaseException:
            self._finished(done)
            if self.error is None:
                self.error = OSError(errno.EIO, "a gathered write was not sent")
            raise
        self.nursery.start_soon(self._write, offset, data, done)

    async def _write(self, offset: int, data: bytes, done: trio.Event) -> None:
        try:
            await self.handle.write(offset, data)
        except Exception as exc:
            if self.error is None:
                self.error = exc
        finally:
            for _ in range(self._units(len(data))):
                self._slots.release()
            self._finished(done)

    def _units(self, size: int) -> int:
        return min(-(-size // self._share), self._total)

    def _finished(self, done: trio.Event) -> None:
        self._ranges = [r for r in self._ranges if r[2] is not done]
        done.set()
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    def runs(self) -> list[tuple[int, bytes | bytearray]]:
        """The writes held here, in flight then gathered: oldest first."""
        runs: list[tuple[int, bytes | bytearray]] = [(a, d) for a, d, _ in self._ranges]
        if self._buf:
            runs.append((self._offset, self._buf))
        return runs

    def overlaps(self, start: int, end: int) -> bool:
        """Whether a write held here (gathered or in flight) touches ``start..end``."""
        return any(a < end and start < a + len(d) for a, d in self.runs())

    def peek(self, start: int, end: int) -> bytes | None:
        """Bytes ``start..end`` as the server will have them once everything here has
        landed, if writes still held here (gathered or in flight) cover all of them;
        else None. A read of what was just written needs no round trip then."""
        if self.error is not None or end <= start:
            return None
        out = bytearray(end - start)
        covered: list[tuple[int, int]] = []
        # Oldest first, so a later write's bytes win where runs overlap.
        for a, d in self.runs():
            lo, hi = max(start, a), min(end, a + len(d))
            if lo < hi:
                out[lo - start:hi - start] = d[lo - a:hi - a]
                covered.append((lo, hi))
        reach = start
        for lo, hi in sorted(covered):
            if lo > reach:
                return None
            reach = max(reach, hi)
        return bytes(out) if reach >= end else None

    async def drain(self, then: SetInfoRequest | None = None) -> SMBError | None:
        """Send what is gathered and wait until the server has it all; then ``then``
        (the file's times: a WRITE after them may move them again), answered after
        every WRITE, in the same compound as the last one where it fits (no round trip
        more). What ``then`` met is returned, for the caller to weigh; a WRITE's
        failure is raised."""
        if then is None or len(self._buf) > self.handle.max_write:
            await self._submit()
            await self._idle.wait()
            self.raise_error()
            return None if then is None else await self.handle.attempt(then)
        await self._idle.wait()  # the earlier WRITEs answered first
        self.raise_error()
        run = self._take()
        if run is None:
            return await self.handle.attempt(then)
        offset, data, done = run
        try:
            return await self.handle.write_then(offset, data, then)
        finally:
            self._finished(done)

    def raise_error(self) -> None:
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc
