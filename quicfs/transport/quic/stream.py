"""One bidirectional QUIC stream as a trio stream (:class:`QuicStream`), and the SMB
transport on it (:class:`QuicTransport`): SMB framed exactly as on TCP (MS-SMB2 2.1,
:class:`~quicfs.transport.framing.FramedStream`).

Writers queue data in the engine and the driver sends it; they wait while the engine
holds more than ``SEND_HIGH_WATER`` bytes not yet sent (flow or congestion control), so
memory stays bounded. A reader behind by ``RECV_HIGH_WATER`` makes the driver withhold
the peer's flow-control credit (RFC 9000 4.1, engine.py) until it catches up.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio
from qh3.quic.connection import QuicConnectionError

from quicfs.errors import ConnectionLost
from quicfs.transport.framing import FramedStream

if TYPE_CHECKING:
    from quicfs.transport.quic.client_driver import ClientDriver
    from quicfs.transport.quic.driver import QuicDriver

#: Bytes a stream may have queued in the engine, not yet sent, before writers wait.
SEND_HIGH_WATER = 2 * 1024 * 1024
#: Bytes received on a stream and not yet read, beyond which the driver holds the
#: engine's events, and so the peer's flow-control credit (engine.py); it lets them go
#: again below half of it.
RECV_HIGH_WATER = 1024 * 1024


class QuicStream(trio.abc.HalfCloseableStream):
    """One bidirectional QUIC stream as a trio stream."""

    def __init__(self, driver: QuicDriver, stream_id: int) -> None:
        self.driver = driver
        self.stream_id = stream_id
        #: Data received and not yet read, as the engine handed it over: a reader that
        #: takes a whole chunk gets it without a copy. ``_recv_off`` is how much of the
        #: first chunk was read already.
        self._recv: deque[bytes] = deque()
        self._recv_off = 0
        self._recv_size = 0
        self._recv_eof = False
        self._readable = trio.Event()
        self._writable = trio.Event()
        self._error: Exception | None = None
        self._send_closed = False
        self._closed = False
        self._sending = False
        self._receiving = False

    # -- from the driver
    def _on_data(self, data: bytes, end: bool) -> None:
        if data:
            self._recv.append(data)
            self._recv_size += len(data)
            if self._recv_size >= RECV_HIGH_WATER:
                self.driver.hold_input()
        if end:
            self._recv_eof = True
        self._readable.set()

    def _on_error(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        self._readable.set()
        self._writable.set()

    def _maybe_writable(self) -> None:
        if self.driver.quic.get_send_buffer_size(self.stream_id) < SEND_HIGH_WATER:
            self._writable.set()

    # -- trio.abc.Stream
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed or self._send_closed:
            raise trio.ClosedResourceError("stream is closed for sending")
        self._sending = True
        try:
            view = memoryview(data).cast("B")
            quic = self.driver.quic
            while True:
                if self._error is not None:
                    raise trio.BrokenResourceError(str(self._error)) from self._error
                room = SEND_HIGH_WATER - quic.get_send_buffer_size(self.stream_id)
                if room > 0:
                    # The engine copies what it is given into its own send queue, so
                    # a view of the caller's buffer is enough: no copy of ours.
                    taken = min(room, len(view))
                    self._queue(view[:taken])
                    view = view[taken:]
                    self.driver.queued()
                    if not view:
                        break
                self._writable = trio.Event()
                self._maybe_writable_after_flush()
                await self._writable.wait()
            await trio.lowlevel.checkpoint()
        finally:
            self._sending = False

    def try_send(self, data: bytes) -> bool:
        """Queue all of ``data`` in the engine, to be sent as :meth:`QuicDriver.queued`
        says, if it has room for it and no other task is sending; False, with nothing
        queued, otherwise. Never waits."""
        if self._sending or self._closed or self._send_closed or self._error is not None:
            return False
        quic = self.driver.quic
        if quic.get_send_buffer_size(self.stream_id) + len(data) > SEND_HIGH_WATER:
            return False
        self._queue(data)
        self.driver.queued()
        return True

    def _queue(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.driver.quic.send_stream_data(self.stream_id, data)
        except QuicConnectionError as exc:
            # The connection closed under the writer (the peer went): a broken stream.
            self._on_error(ConnectionLost(self.driver.lost_message()))
            raise trio.BrokenResourceError(str(exc)) from None

    def _maybe_writable_after_flush(self) -> None:
        # If the engine already drained, do not wait for an event that may never come.
        if self.driver.quic.get_send_buffer_size(self.stream_id) < SEND_HIGH_WATER // 2:
            self._writable.set()

    async def wait_send_all_might_not_block(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        if not self._send_closed:
            self._send_closed = True
            if self._error is None:
                self.driver.quic.send_stream_data(self.stream_id, b"", end_stream=True)
                self.driver.wake()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        pieces = await self._receive(max_bytes)
        if len(pieces) == 1 and type(pieces[0]) is bytes:
            return pieces[0]  # a chunk taken whole and alone: as the engine gave it
        return b"".join(pieces)

    async def receive_pieces(self, max_bytes: int) -> list[bytes | memoryview]:
        """As :meth:`receive_some`, but the data in the pieces the engine handed over,
        none copied, for a reader that copies them on anyway (framing.py); an empty
        list at the end of the stream."""
        return await self._receive(max_bytes)

    async def _receive(self, max_bytes: int | None) -> list[bytes | memoryview]:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError
        self._receiving = True
        try:
            waited = False
            while not self._recv and not self._recv_eof:
                if self._error is not None:
                    raise trio.BrokenResourceError(str(self._error)) from self._error
                self._readable = trio.Event()
                await self._readable.wait()
                waited = True
                if self._closed:
                    raise trio.ClosedResourceError
            pieces = self._take(self._recv_size if max_bytes is None else max_bytes)
            if self._recv_size < RECV_HIGH_WATER // 2:
                self.driver.release_input()
            if not waited:
                # trio's rule: every receive is a checkpoint. A wait above was one; a
                # second would cost a pass through the scheduler on every message.
                await trio.lowlevel.checkpoint()
            return pieces
        finally:
            self._receiving = False

    def _take(self, limit: int) -> list[bytes | memoryview]:
        """Up to ``limit`` bytes of what was received, oldest first, as the chunks the
        engine gave: whole, or a view of the part of one that fits."""
        recv = self._recv
        pieces: list[bytes | memoryview] = []
        taken = 0
        while recv and taken < limit:
            chunk, off = recv[0], self._recv_off
            size = len(chunk) - off
            if taken + size <= limit:
                pieces.append(chunk if off == 0 else memoryview(chunk)[off:])
                recv.popleft()
                self._recv_off = 0
                taken += size
            else:
                end = off + limit - taken
                pieces.append(memoryview(chunk)[off:end])
                self._recv_off = end
                taken = limit
        self._recv_size -= taken
        return pieces

    async def aclose(self) -> None:
        if not self._closed:
            if not self._send_closed and self._error is None:
                try:
                    self.driver.quic.send_stream_data(self.stream_id, b"", end_stream=True)
                    self.driver.wake()
                except Exception:
                    pass
            self._closed = True
            self._readable.set()
            self._writable.set()
        await trio.lowlevel.checkpoint()


class QuicTransport(FramedStream):
    """A MessageTransport over one QUIC bidirectional stream."""

    def __init__(self, driver: ClientDriver, stream: QuicStream, peer: str, *,
                 verified: bool) -> None:
        super().__init__(stream, kind="quic", peer=peer)
        self.driver = driver
        self.quic_stream = stream
        #: The server's certificate was verified (CA and name, or a pin). Only then may
        #: SMB leave encryption to QUIC (MS-SMB2 2.2.3.1.5, design.md).
        self.verified = verified

    #: PINGs get answered within an RTT by the QUIC peer itself, so silence means the
    #: path or the peer is gone, not a slow server (link.py probes first).
    dead_after = 3.0

    def heard(self) -> float:
        return max(self.last_received, self.driver.last_heard)

    def probe(self) -> None:
        self.driver.probe()

    @property
    def migrations(self) -> int:
        return self.driver.migrations

    async def migrate(self, cause: str = "asked to") -> None:
        await self.driver.migrate(cause)

    def stats(self) -> dict[str, float | int]:
        return self.driver.stats()

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.driver.aclose("SMB connection closed")

