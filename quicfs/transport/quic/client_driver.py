"""The client's side of the driver (driver.py): its own UDP socket, read with GRO and
written with GSO (udp.py), never ``connect()``-ed, so the connection can move to a new
one (:meth:`ClientDriver.migrate`, RFC 9000 9) and the engine validates the new path
itself.
"""

from __future__ import annotations

import logging
import socket

import trio

from quicfs.transport.quic.driver import Batch, QuicDriver
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.stream import QuicStream
from quicfs.transport.quic.udp import (
    GRO_CMSG_SPACE,
    RECV_SIZE,
    gro_segment,
    new_udp_socket,
    send_batch,
)

log = logging.getLogger("quicfs.quic")


class ClientDriver(QuicDriver):
    """A client's QUIC connection, on a UDP socket of its own."""

    def __init__(self, quic: Engine, *, sock: socket.socket,
                 peer: tuple[str, int] | tuple[str, int, int, int], label: str) -> None:
        super().__init__(quic, peer=peer, label=label)
        self.sock = sock
        self.migrations = 0
        #: Set by the first datagram after a migration: the new path has been answered.
        self._answered: trio.Event | None = None
        self._gso = hasattr(socket, "SOL_UDP")

    def open_stream(self) -> QuicStream:
        stream_id = self.quic.get_next_available_stream_id()
        stream = QuicStream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    def queued(self) -> None:
        """A stream queued data in the engine. A client has many writers (one per
        request), so its worker sends on its next pass, after every writer that runs in
        this one: their messages share datagrams."""
        self.wake()

    # -- input and output
    async def _wait_input(self) -> None:
        if self.sock.fileno() < 0:
            # aclose() cancelled the worker, then closed the socket, while the worker
            # was busy: its cancellation arrives here (wait_readable would raise
            # ValueError on the closed socket's -1 first: seen as "internal error").
            await trio.sleep_forever()
        try:
            await trio.lowlevel.wait_readable(self.sock)
        except trio.ClosedResourceError:
            pass  # migrate() swapped the socket under us: wait on the new one

    def _drain_input(self, now: float) -> None:
        """Feed everything waiting, in batches: one engine call per run of datagrams from
        one address (``receive_many_datagrams``), or per GRO super-buffer."""
        batch = Batch(self, now)
        sock = self.sock
        for _ in range(512):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(RECV_SIZE, GRO_CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP port unreachable and the like: QUIC's timers decide.
                log.debug("%s: recvmsg: %s", self.label, exc)
                break
            segment = gro_segment(ancdata)
            batch.start(addr)
            if segment and len(data) > segment:
                batch.flush()
                self._account(len(data), (len(data) + segment - 1) // segment, now)
                try:
                    self.quic.receive_gro_buffer(data, segment, addr, now)
                except ValueError as exc:
                    log.debug("%s: dropped GRO buffer: %s", self.label, exc)
            else:
                batch.datas.append(data)
        batch.flush()

    def _account(self, nbytes: int, count: int, now: float) -> None:
        super()._account(nbytes, count, now)
        if self._answered is not None:
            self._answered.set()  # a migration's new path has been answered
            self._answered = None

    def _transmit(self, datagrams: list[tuple[bytes, object]]) -> None:
        self.datagrams_sent += len(datagrams)
        send_batch(self.sock, datagrams, gso=self._gso)

    # -- lifetime
    async def aclose(self, reason: str = "closed", *, linger: float = 0.5) -> None:
        await super().aclose(reason, linger=linger)
        trio.lowlevel.notify_closing(self.sock)  # the worker may be waiting on it
        self.sock.close()

    async def migrate(self, cause: str = "asked to") -> None:
        """Move to a new local UDP socket (new port) and carry on (RFC 9000 section 9).

        A fresh connection id goes with the new path, so it is not linkable to the old
        one (9.5); the server validates the path (8.2) and follows. Logged once the
        server has answered on the new path."""
        old = self.sock
        self.sock = new_udp_socket(old.family)
        self.quic.change_connection_id()
        self.migrations += 1
        trio.lowlevel.notify_closing(old)
        old.close()
        started, answered = trio.current_time(), trio.Event()
        self._answered = answered
        self._ping(self.migrations)
        self.wake()
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(10):
            await answered.wait()
            log.warning("QUIC connection migrated to local port %d in %.3f s (cause: %s)",
                        self.sock.getsockname()[1], trio.current_time() - started, cause)
