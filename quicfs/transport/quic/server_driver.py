"""The server's side of the driver (driver.py): input handed over by the dispatcher
(server.py), which routes datagrams by connection id; output through the dispatcher's
socket; and the client's address followed as it moves (peer_path.py: migration, NAT
rebinding; RFC 9000 9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from qh3.quic.packet import QuicErrorCode

from quicfs.errors import ConnectionLost
from quicfs.transport.quic.driver import Batch, QuicDriver
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.peer_path import PeerPath

log = logging.getLogger("quicfs.quic")

#: RFC 9002 6.2.2 kInitialRtt: the RTT assumed before there is a sample.
INITIAL_RTT = 0.333


class ServerDriver(QuicDriver):
    """A server's QUIC connection, fed and sent for by the dispatcher."""

    def __init__(self, quic: Engine, *, peer: tuple[str, int] | tuple[str, int, int, int],
                 label: str, max_peer_streams: int | None = None) -> None:
        super().__init__(quic, peer=peer, label=label)
        #: Where datagrams go out: the dispatcher's socket.
        self.send_datagrams: Callable[[list[tuple[bytes, object]]], None] | None = None
        #: The client's address as we follow it (peer_path.py); qh3 is told ``peer`` for
        #: the whole connection.
        self.path = PeerPath(peer, self._ping_path, self._rtt)
        #: What the dispatcher handed over, in runs from one address each (one comparison
        #: and one append per datagram; the engine takes a run at once).
        self._inbox: list[tuple[object, list[bytes]]] = []
        #: Streams the peer may open (one, for SMB); None for no limit of ours.
        self.max_peer_streams = max_peer_streams

    @property
    def peer_moves(self) -> int:
        """Times the client's address changed under us and we followed (client
        migrations and NAT rebindings)."""
        return self.path.moves

    # -- called by the dispatcher
    def deliver(self, data: bytes, addr: object) -> None:
        """The dispatcher hands over a datagram for this connection; it calls
        :meth:`take_input` once it has handed over all it read."""
        inbox = self._inbox
        if inbox and inbox[-1][0] == addr:
            inbox[-1][1].append(data)
        else:
            inbox.append((addr, [data]))

    def take_input(self) -> None:
        """Feed what :meth:`deliver` handed over to the engine now, in the dispatcher's
        task, and send what that calls for. Waking the worker instead would cost a pass
        through trio's scheduler per datagram, on the path of every request. Whatever
        goes wrong here is this connection's failure, ended by its worker, never the
        dispatcher's."""
        if not self._guarded(self._turn):
            return
        self.kick()
        if self.terminated.is_set():
            self.wake()  # the worker ends

    def queued(self) -> None:
        """A stream queued data in the engine. The server sends it at once: its writer (the
        gateway's pump) hands over all the backend said in one go."""
        self.kick()

    def abandon(self, reason: str) -> None:
        """End the connection without a word to the peer: nobody may be there to hear
        it (a half-open connection from a spoofed address)."""
        self.close_reason = self.close_reason or reason
        if self._worker_scope is not None:
            self._worker_scope.cancel()

    # -- input
    async def _wait_input(self) -> None:
        await trio.sleep_forever()  # the dispatcher wakes us

    def _drain_input(self, now: float) -> None:
        """Feed everything the dispatcher handed over, in batches: one engine call per run
        of datagrams from one address (``receive_many_datagrams``)."""
        batch = Batch(self, now)
        path = self.path
        runs, self._inbox = self._inbox, []
        for addr, datas in runs:
            if addr == path.addr:
                batch.start(addr)
                batch.datas.extend(datas)
                continue
            for data in datas:
                if addr != path.addr:
                    batch.flush()
                    self._from_elsewhere(data, addr, now)
                    continue
                batch.start(addr)
                batch.datas.append(data)
        batch.flush()

    def _from_elsewhere(self, data: bytes, addr: object, now: float) -> None:
        """A datagram from an address not the client's. qh3 reads it as if from the
        client's (peer_path.py); only if it held a packet the engine authenticated and had
        not seen does the address become a candidate (RFC 9000 9.3): junk with a live
        connection id, or a replay, is dropped and moves nothing."""
        try:
            fresh = self.quic.receive([data], self.path.engine_addr, now)
        except ValueError as exc:
            fresh = 0
            log.debug("%s: dropped a datagram from %s: %s", self.label, addr, exc)
        if not fresh:
            return
        self._account(len(data), 1, now)
        # Also during the handshake: a NAT may rebind a client then too.
        self._send(self.path.received(addr, len(data), now))

    def _receive_many(self, batch: list[bytes], addr: object, now: float) -> int:
        fresh = super()._receive_many(batch, self.path.engine_addr, now)
        if fresh and self.path.pending:
            # The client spoke from its validated address: a candidate ends (a spoofed
            # or replayed packet must not move it, 9.3.2).
            self._send(self.path.received(self.path.addr, 0, now))
        return fresh

    def _may_open(self, stream_id: int) -> bool:
        """The peer opens ``stream_id``: within what we advertised (engine.py), or the
        connection ends with STREAM_LIMIT_ERROR (RFC 9000 4.6). A stream costs a backend
        connection on the gateway, so this is where fan-out stops."""
        if self.max_peer_streams is None:
            return True
        # Only a server limits (max_peer_streams), so the peer's streams are the
        # client-initiated ones: even ids (RFC 9000 2.1).
        opened = sum(1 for sid in self.streams if sid & 1 == 0)
        if stream_id & 2 == 0 and opened < self.max_peer_streams:
            return True
        self.close_reason = f"the client opened more than {self.max_peer_streams} stream(s)"
        self._close_now(QuicErrorCode.STREAM_LIMIT_ERROR, "one stream per connection")
        self._fail_streams(ConnectionLost(self.lost_message()))
        self.terminated.set()
        return False

    # -- output, and the path to the client
    def _transmit(self, datagrams: list[tuple[bytes, object]]) -> None:
        self._send(self.path.route([data for data, _ in datagrams], trio.current_time()))

    def _send(self, datagrams: list[tuple[bytes, object]]) -> None:
        """Out through the dispatcher's socket."""
        if datagrams:
            assert self.send_datagrams is not None
            self.datagrams_sent += len(datagrams)
            self.send_datagrams(datagrams)

    def _ping_path(self, uid: int) -> list[bytes]:
        """PING ``uid`` to validate the client's new address (RFC 9000 8.2), in a
        datagram of its own: the datagrams that carry it, which the path sends ahead of
        what it holds (peer_path.py). What the engine had to send is made first (the
        path holds it), so the packet made after the PING has nothing else to carry (an
        ACK at most): qh3 would have put the PING in the next full datagram, and one
        full datagram is more than a client sending only 40-byte ACKs from its new port
        ever buys there (three times what came from it, 8.1, 9.3.1)."""
        self._flush()
        self._ping(uid)
        return [data for data, _ in self._made()]

    def _poll_path(self, now: float) -> None:
        self._send(self.path.poll(now))

    def _path_deadline(self) -> float:
        return self.path.deadline()

    def _acknowledged(self, uid: int) -> None:
        moves = self.path.moves
        self._send(self.path.acknowledged(uid))
        if self.path.moves != moves:
            # Debug only: a client decides how often it moves; the line at the
            # connection's end counts the moves.
            log.debug("%s: the client is now at %s (move %d)", self.label,
                      self.path.addr, self.path.moves)

    def _rtt(self) -> float:
        return self.quic.figure("smoothed_rtt") or INITIAL_RTT
