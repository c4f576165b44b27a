"""An independent QUIC client for interop tests: aioquic's sans-I/O ``QuicConnection``
(a test dependency only) driven by a small trio loop, its one bidirectional stream
offered as a ``trio.abc.HalfCloseableStream`` so that our SMB client can run over it
(wrap it in :class:`quicfs.transport.framing.FramedStream`).

    client = AioquicClient("127.0.0.1", port, ticket=None)
    await nursery.start(client.run)
    await client.handshake(within=5)        # or not, to send the first bytes in 0-RTT
    stream = client.open_stream()
    ...
    await client.aclose()

The loop: send what the engine has to send, wait for a datagram, the engine's timer or
a wake-up (a writer queued data), feed it, hand the events on. Time is
``trio.current_time()``. Session tickets the server issues land in ``tickets``.
"""

from __future__ import annotations

import math
import socket
import ssl

import trio
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket

from quicfs.transport.quic.client import wait_for_any


class HandshakeFailed(RuntimeError):
    pass


class AioquicStream(trio.abc.HalfCloseableStream):
    """One bidirectional stream of an :class:`AioquicClient`."""

    def __init__(self, client: AioquicClient, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self._recv = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._readable = trio.Event()
        self._send_closed = False
        self._closed = False

    # -- from the client's loop
    def _on_data(self, data: bytes, end: bool) -> None:
        self._recv += data
        self._eof = self._eof or end
        self._readable.set()

    def _on_error(self, exc: BaseException) -> None:
        self._error = self._error or exc
        self._readable.set()

    # -- trio.abc.HalfCloseableStream
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._send_closed:
            raise trio.ClosedResourceError("stream is closed for sending")
        if self._error is not None:
            raise trio.BrokenResourceError(str(self._error)) from self._error
        self.client.quic.send_stream_data(self.stream_id, bytes(data))
        self.client.wake()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if not self._send_closed and not self._closed and self._error is None:
            self._send_closed = True
            self.client.quic.send_stream_data(self.stream_id, b"", end_stream=True)
            self.client.wake()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError
        while not self._recv and not self._eof:
            if self._error is not None:
                raise trio.BrokenResourceError(str(self._error)) from self._error
            self._readable = trio.Event()
            await self._readable.wait()
            if self._closed:
                raise trio.ClosedResourceError
        n = len(self._recv) if max_bytes is None else max_bytes
        data = bytes(self._recv[:n])
        del self._recv[:n]
        await trio.lowlevel.checkpoint()
        return data

    async def aclose(self) -> None:
        if not self._closed:
            await self.send_eof()
            self._closed = True
            self._readable.set()
        await trio.lowlevel.checkpoint()


class AioquicClient:
    def __init__(self, host: str, port: int, *, server_name: str = "localhost",
                 ticket: SessionTicket | None = None, alpn: str = "smb") -> None:
        config = QuicConfiguration(is_client=True, alpn_protocols=[alpn],
                                   verify_mode=ssl.CERT_NONE, server_name=server_name)
        if ticket is not None:
            config.session_ticket = ticket
        self.peer = (host, port)
        #: Session tickets the server sent (NewSessionTicket), oldest first.
        self.tickets: list[SessionTicket] = []
        self.quic = QuicConnection(configuration=config,
                                   session_ticket_handler=self.tickets.append)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.setblocking(False)
        self.streams: dict[int, AioquicStream] = {}
        self.handshake_done = trio.Event()
        self.terminated = trio.Event()
        self.ticket_received = trio.Event()
        self.alpn: str | None = None
        self.session_resumed = False
        self.early_data_accepted = False
        self.close_reason: str | None = None
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self._scope: trio.CancelScope | None = None
        self._woken = False
        self._worker: trio.CancelScope | None = None

    # -- the loop
    def wake(self) -> None:
        self._woken = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.quic.connect(self.peer, now=trio.current_time())
        with trio.CancelScope() as self._worker:
            task_status.started()
            try:
                while not self.terminated.is_set():
                    self._transmit()
                    timer = self.quic.get_timer()
                    if not self._woken:
                        with trio.CancelScope(deadline=math.inf if timer is None else timer
                                              ) as self._scope:
                            await trio.lowlevel.wait_readable(self.sock)
                        self._scope = None
                    self._woken = False
                    now = trio.current_time()
                    self._receive(now)
                    timer = self.quic.get_timer()
                    if timer is not None and now >= timer:
                        self.quic.handle_timer(now)
                    self._events()
            finally:
                self.terminated.set()
                self._fail_streams(self.close_reason or "connection ended")
                self.sock.close()

    def _receive(self, now: float) -> None:
        for _ in range(1024):
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP unreachable and the like: the engine's timers decide
            self.datagrams_received += 1
            self.quic.receive_datagram(data, addr, now)

    def _transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(now=trio.current_time()):
            try:
                self.sock.sendto(data, addr)
                self.datagrams_sent += 1
            except BlockingIOError:
                pass  # a full socket buffer: a loss, which QUIC recovers from
        self._events()

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(event.data, event.end_stream)
            elif isinstance(event, events.HandshakeCompleted):
                self.alpn = event.alpn_protocol
                self.session_resumed = event.session_resumed
                self.early_data_accepted = event.early_data_accepted
                self.handshake_done.set()
            elif isinstance(event, events.StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_error(ConnectionError(f"stream reset ({event.error_code})"))
            elif isinstance(event, events.ConnectionTerminated):
                self.close_reason = (f"connection closed (error {event.error_code:#x}): "
                                     f"{event.reason_phrase}")
                self.terminated.set()
                self._fail_streams(self.close_reason)
        if self.tickets:
            self.ticket_received.set()

    def _fail_streams(self, reason: str) -> None:
        for stream in self.streams.values():
            stream._on_error(ConnectionError(reason))

    # -- for the test
    async def handshake(self, within: float) -> None:
        """Wait for the handshake; :class:`HandshakeFailed` saying why if it does not
        complete within ``within`` seconds."""
        with trio.move_on_after(within):
            await wait_for_any(self.handshake_done, self.terminated)
        if not self.handshake_done.is_set():
            why = self.close_reason or (
                f"no handshake within {within:g} s ({self.datagrams_sent} datagrams sent, "
                f"{self.datagrams_received} received)")
            raise HandshakeFailed(f"aioquic to {self.peer[0]}:{self.peer[1]}: {why}")

    def open_stream(self) -> AioquicStream:
        stream_id = self.quic.get_next_available_stream_id()
        stream = AioquicStream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    async def aclose(self) -> None:
        if not self.terminated.is_set():
            # CONNECTION_CLOSE goes out now; the engine's draining period is not waited.
            self.quic.close(reason_phrase="done")
            self._transmit()
        if self._worker is not None:
            self._worker.cancel()
        await trio.lowlevel.checkpoint()


__all__ = ["AioquicClient", "AioquicStream", "HandshakeFailed"]
