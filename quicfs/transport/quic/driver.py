"""The driver: one QUIC connection's engine driven by trio (RFC 9000).

Theory of operation
-------------------
A :class:`QuicDriver` owns one ``qh3.quic.connection.QuicConnection`` and one *worker*
task. The worker loops: send what the engine has to send (``datagrams_to_send``), then
wait for whichever comes first -- input (datagrams) or the engine's timer (``get_timer``)
-- then feed the input (``receive_datagram``) or fire the timer (``handle_timer``) and hand
the engine's events to the streams. ``now`` is always ``trio.current_time()``, so timers
are monotonic and tests may run on a MockClock.

Each pass through trio's scheduler costs about as much as qh3's work for a message, so
the hops per message are few. A stream writer queues data in the engine
(``send_stream_data``); on a client it then *wakes* the worker, which cancels its wait and
sends on its next pass what every writer of this pass queued (one datagram for many small
requests); on a server the writer sends at once (:meth:`QuicDriver.kick`) and moves the
worker's timer. A wake that arrives while the worker is busy is remembered in a flag, so
none is lost. On a server the dispatcher also feeds the engine itself
(:meth:`QuicDriver.take_input`). Writers wait while the engine holds more than
``SEND_HIGH_WATER`` bytes not yet sent (flow or congestion control): memory stays
bounded.

Input comes from the driver's own UDP socket on the client, and from the server's
dispatcher on the server (:mod:`quicfs.transport.quic.server`), which routes datagrams by
connection id. The client's socket is never ``connect()``-ed, so the connection can move
to a new local socket (:meth:`QuicDriver.migrate`, RFC 9000 section 9) and the engine
validates the new path itself.

One bidirectional stream carries SMB, framed exactly as on TCP
(:class:`~quicfs.transport.framing.FramedStream` on top of :class:`QuicStream`).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable

import trio
from qh3.quic import events
from qh3.quic.connection import QuicConnectionError
from qh3.quic.packet import QuicErrorCode

from quicfs.errors import ConnectionLost
from quicfs.transport.engine import Engine
from quicfs.transport.quic.peer_path import PeerPath
from quicfs.transport.quic.stream import QuicStream
from quicfs.transport.quic.udp import (
    GRO_CMSG_SPACE,
    RECV_SIZE,
    gro_segment,
    new_udp_socket,
    send_batch,
)

log = logging.getLogger("quicfs.quic")
# qh3 reports every peer close at WARNING under "quic"; a close is not a warning to us,
# and our own log lines say what matters.
logging.getLogger("quic").setLevel(logging.ERROR)

#: RFC 9002 6.2.2 kInitialRtt: the RTT assumed before there is a sample.
INITIAL_RTT = 0.333
#: Events a held engine may queue (engine.py). An honest peer blocked by flow control
#: sends ACKs (no events) and a window's worth of STREAM frames (some 4,500 of them);
#: a peer that sends tens of thousands of tiny frames meanwhile is closed.
MAX_HELD_EVENTS = 50_000
#: A PING after this much silence keeps NAT bindings and the idle timer alive.
KEEPALIVE_INTERVAL = 10.0


def is_fault(exc: BaseException) -> bool:
    """A fault in the code (ours, or qh3's: a panic in its Rust core arrives as pyo3's
    PanicException, a BaseException), not a cancellation or the process ending."""
    return not isinstance(exc, trio.Cancelled | KeyboardInterrupt | SystemExit
                          | GeneratorExit)


async def wait_for_any(*events: trio.Event) -> None:
    """Return as soon as any of ``events`` is set (at once if one already is)."""
    if any(event.is_set() for event in events):
        await trio.lowlevel.checkpoint()
        return
    async with trio.open_nursery() as nursery:

        async def until(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(until, event)


def printable(text: str, limit: int = 200) -> str:
    """A peer's words made safe for one log line: control characters escaped, bounded."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class QuicDriver:
    """One QUIC connection and the task that drives it."""

    def __init__(self, quic: Engine, *, sock: socket.socket | None,
                 peer: tuple[str, int] | tuple[str, int, int, int], label: str,
                 max_peer_streams: int | None = None) -> None:
        self.quic = quic
        self.sock = sock  # client: our own socket; server: None (the dispatcher sends)
        self.peer_addr = peer
        self.label = label
        self.send_datagrams: Callable[[list[tuple[bytes, object]]], None] | None = None
        self.streams: dict[int, QuicStream] = {}
        self.accept_handler: Callable[[QuicStream], None] | None = None
        self.handshake_done = trio.Event()
        #: The handshake is confirmed (RFC 9001 4.1.2): a client has the server's
        #: HANDSHAKE_DONE, so the server accepted our Finished (and our certificate).
        self.confirmed = trio.Event()
        #: Set when the peer opens its first stream.
        self.stream_opened = trio.Event()
        self.terminated = trio.Event()
        self.close_reason: str | None = None
        self.close_error_code: int | None = None
        self.migrations = 0
        #: Server side: the client's address as we follow it (peer_path.py); qh3 is told
        #: ``peer`` for the whole connection.
        self.path = PeerPath(peer, self._ping, self._rtt) if sock is None else None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self._answered: trio.Event | None = None
        #: trio time of the last datagram from the peer (any: ACKs prove it alive).
        self.last_heard = trio.current_time()
        self.alpn: str | None = None
        self.session_resumed = False
        self.early_data_accepted = False
        #: Server side: what the dispatcher handed over, in runs from one address each
        #: (one comparison and one append per datagram; the engine takes a run at once).
        self._inbox: list[tuple[object, list[bytes]]] = []
        self._wake_scope: trio.CancelScope | None = None
        self._wake_pending = False
        self._worker_scope: trio.CancelScope | None = None
        self._last_rx = trio.current_time()
        self._gso = sock is not None and hasattr(socket, "SOL_UDP")
        self.on_event: Callable[[events.QuicEvent], None] | None = None
        self._engine_error: BaseException | None = None
        #: Streams the peer may open (server: one, for SMB); None for no limit of ours.
        self.max_peer_streams = max_peer_streams
        #: Datagrams from an address other than the client's that the engine did not
        #: authenticate (junk, replays): dropped, never a reason to move.
        self.unauthenticated = 0

    @property
    def peer_moves(self) -> int:
        """Times the client's address changed under us and we followed (server side:
        client migrations and NAT rebindings)."""
        return self.path.moves if self.path is not None else 0

    # -- called by other tasks
    def wake(self) -> None:
        self._wake_pending = True
        if self._wake_scope is not None:
            self._wake_scope.cancel()

    def deliver(self, data: bytes, addr: object) -> None:
        """Server side: the dispatcher hands over a datagram for this connection; it calls
        :meth:`take_input` once it has handed over all it read."""
        inbox = self._inbox
        if inbox and inbox[-1][0] == addr:
            inbox[-1][1].append(data)
        else:
            inbox.append((addr, [data]))

    def take_input(self) -> None:
        """Server side: feed what :meth:`deliver` handed over to the engine now, in the
        dispatcher's task, and send what that calls for. Waking the worker instead would
        cost a pass through trio's scheduler per datagram, on the path of every request.
        Whatever goes wrong here is this connection's failure, ended by its worker, never
        the dispatcher's."""
        try:
            self._turn()
        except BaseException as exc:
            if not is_fault(exc):
                raise
            self._failed(exc)
            return
        self.kick()
        if self.terminated.is_set():
            self.wake()  # the worker ends

    def queued(self) -> None:
        """A stream queued data in the engine. The server sends it at once: its writer
        (the gateway's pump) hands over all the backend said in one go. A client has many
        writers (one per request), so its worker sends on its next pass, after every
        writer that runs in this one: their messages share datagrams."""
        if self.sock is None:
            self.kick()
        else:
            self.wake()

    def kick(self) -> None:
        """Send what the engine has to send now, from the caller's task, and move the
        worker's wait to the engine's new timer. Cheaper than :meth:`wake`: the worker
        need not run."""
        try:
            self._flush()
        except BaseException as exc:
            if not is_fault(exc):
                raise
            self._failed(exc)
            return
        scope = self._wake_scope
        if scope is not None:
            scope.deadline = self._deadline()

    def _failed(self, exc: BaseException) -> None:
        # Raised in the worker, which ends the connection.
        if self._engine_error is None:
            self._engine_error = exc
        self.wake()

    def hold_input(self) -> None:
        """A stream's reader is behind: withhold the peer's credit (engine.py)."""
        self.quic.hold = True

    def release_input(self) -> None:
        """The reader caught up: hand on what the engine held, and send the credit."""
        if self.quic.hold:
            self.quic.release()
            self._process_events()
            self.kick()

    # -- the worker
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        with trio.CancelScope() as self._worker_scope:
            task_status.started()
            try:
                while True:
                    self._flush()
                    if self.terminated.is_set() and not self.quic.datagrams_to_send(
                        trio.current_time()
                    ):
                        return
                    deadline = self._deadline()
                    if not self._wake_pending:
                        with trio.CancelScope(deadline=deadline) as scope:
                            self._wake_scope = scope
                            await self._wait_input()
                        self._wake_scope = None
                    self._wake_pending = False
                    if self._engine_error is not None:
                        raise self._engine_error
                    if self._turn():
                        # Let the streams' readers act on what arrived first (the gateway
                        # forwards it, a client answers the next request): what they send
                        # then leaves in the same flush as our ACK, instead of waiting
                        # behind an ACK-only packet. Two passes: a reader may hand the
                        # data to another task before anything is sent.
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        await trio.lowlevel.cancel_shielded_checkpoint()
            except QuicConnectionError as exc:
                # The engine gave up on the connection in a way it reports by raising
                # (seen: "missing OneRtt packet key" after a peer restart): the
                # connection is over, the process is not.
                log.info("%s: QUIC engine error: %s", self.label, exc)
                self.close_reason = self.close_reason or f"QUIC engine error: {exc}"
            except BaseException as exc:
                if not is_fault(exc):
                    raise
                # A fault in this connection's handling (ours, or qh3's: a panic of its
                # Rust core is a BaseException): it ends this connection (the peer is
                # told), and the owner logs it.
                self.close_reason = (self.close_reason
                                     or f"internal error: {type(exc).__name__}: {exc}")
                self._close_now(QuicErrorCode.INTERNAL_ERROR, "internal error")
                if isinstance(exc, Exception):
                    raise
                raise RuntimeError(self.close_reason) from exc
            finally:
                self._fail_streams(ConnectionLost(self._lost_message()))
                self.terminated.set()

    def _turn(self) -> bool:
        """Feed the input waiting, fire the engine's timer if due, keep the path alive, and
        hand the engine's events on. True if a stream received data."""
        now = trio.current_time()
        self._drain_input(now)
        if self.quic.hold and self.quic.held_events > MAX_HELD_EVENTS:
            self.close_reason = "the client sent too many frames while flow-control blocked"
            self._close_now(QuicErrorCode.PROTOCOL_VIOLATION, "too many frames while blocked")
            self.quic.release()
        if self.path is not None:
            self._send(self.path.poll(now))
        timer = self.quic.get_timer()
        if timer is not None and now >= timer:
            self.quic.handle_timer(now)
        if (now - self._last_rx >= KEEPALIVE_INTERVAL
                and self.handshake_done.is_set() and not self.terminated.is_set()):
            self._ping()
            self._last_rx = now
        return self._process_events()

    def _close_now(self, code: int, reason: str) -> None:
        """Close with ``code`` and send the CONNECTION_CLOSE at once, if the engine can."""
        try:
            self.quic.close(error_code=code, reason_phrase=reason)
            self._flush()
        except Exception as exc:
            log.debug("%s: close: %s", self.label, exc)

    def _deadline(self) -> float:
        timer = self.quic.get_timer()
        # Keep-alives begin with the handshake's end (_turn): before it, a keep-alive
        # deadline would pass and never move, and the worker would spin.
        keepalive = (self._last_rx + KEEPALIVE_INTERVAL if self.handshake_done.is_set()
                     else math.inf)
        candidate = self.path.deadline() if self.path is not None else math.inf
        return min(timer if timer is not None else math.inf, keepalive, candidate)

    def probe(self) -> None:
        """A PING, which the peer's QUIC stack ACKs at once (RFC 9000 19.2) whatever the
        SMB server behind it is busy with."""
        self._ping()
        self.wake()

    def _ping(self, uid: int = 0) -> None:
        try:
            self.quic.send_ping(uid)
        except Exception as exc:
            log.debug("%s: ping: %s", self.label, exc)

    async def _wait_input(self) -> None:
        if self.sock is not None:
            try:
                await trio.lowlevel.wait_readable(self.sock)
            except trio.ClosedResourceError:
                pass  # migrate() swapped the socket under us: wait on the new one
        else:
            await trio.sleep_forever()  # the dispatcher wakes us

    def _drain_input(self, now: float) -> None:
        """Feed everything waiting, in batches: one engine call per run of datagrams from
        one address (``receive_many_datagrams``), or per GRO super-buffer."""
        batch: list[bytes] = []
        batch_addr: object = None

        def flush_batch() -> None:
            nonlocal batch
            if batch:
                self._receive_many(batch, batch_addr, now)
                batch = []

        if self.sock is not None:
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
                if addr != batch_addr:
                    flush_batch()
                    batch_addr = addr
                if segment and len(data) > segment:
                    flush_batch()
                    self._account(len(data), (len(data) + segment - 1) // segment, now)
                    try:
                        self.quic.receive_gro_buffer(data, segment, addr, now)
                    except ValueError as exc:
                        log.debug("%s: dropped GRO buffer: %s", self.label, exc)
                else:
                    batch.append(data)
        path = self.path
        runs, self._inbox = self._inbox, []
        for addr, datas in runs:
            if path is None or addr == path.addr:
                if addr != batch_addr:
                    flush_batch()
                    batch_addr = addr
                batch.extend(datas)
                continue
            for data in datas:
                if addr != path.addr:
                    flush_batch()
                    self._from_elsewhere(data, addr, now)
                    continue
                if addr != batch_addr:
                    flush_batch()
                    batch_addr = addr
                batch.append(data)
        flush_batch()

    def _from_elsewhere(self, data: bytes, addr: object, now: float) -> None:
        """Server side: a datagram from an address not the client's. qh3 reads it as if
        from the client's (peer_path.py); only if it held a packet the engine
        authenticated and had not seen does the address become a candidate (RFC 9000
        9.3): junk with a live connection id, or a replay, moves nothing."""
        assert self.path is not None
        try:
            fresh = self.quic.receive([data], self.path.engine_addr, now)
        except ValueError as exc:
            fresh = 0
            log.debug("%s: dropped a datagram from %s: %s", self.label, addr, exc)
        if not fresh:
            self.unauthenticated += 1
            return
        self._account(len(data), 1, now)
        # Also during the handshake: a NAT may rebind a client then too.
        self._send(self.path.received(addr, len(data), now))

    def _account(self, nbytes: int, count: int, now: float) -> None:
        self.bytes_received += nbytes
        self.datagrams_received += count
        if self._answered is not None:
            self._answered.set()  # a migration's new path has been answered
            self._answered = None
        self._last_rx = self.last_heard = now

    def _receive_many(self, batch: list[bytes], addr: object, now: float) -> None:
        self._account(sum(map(len, batch)), len(batch), now)
        if self.path is not None:
            addr = self.path.engine_addr
        fresh = None
        if len(batch) > 1 and addr == self.peer_addr:
            try:
                fresh = self.quic.receive(batch, addr, now)
            except ValueError:
                pass  # one by one below
        if fresh is None:
            fresh = self._receive_each(batch, addr, now)
        if fresh and self.path is not None and self.path.pending:
            # The client spoke from its validated address: a candidate ends (a spoofed
            # or replayed packet must not move it, 9.3.2).
            self._send(self.path.received(self.path.addr, 0, now))

    def _receive_each(self, batch: list[bytes], addr: object, now: float) -> int:
        """One by one: a single datagram, a batch the engine refused, or one from an
        address that is not the peer's (the engine's batch path opens no new paths).
        The packets the engine authenticated and had not seen."""
        fresh = 0
        for data in batch:
            try:
                fresh += self.quic.receive([data], addr, now)
            except ValueError as exc:
                # Refused by the engine: dropped like a damaged packet; QUIC's loss
                # recovery decides what follows.
                log.debug("%s: dropped a datagram from %s: %s", self.label, addr, exc)
        return fresh

    def _flush(self) -> None:
        datagrams = self.quic.datagrams_to_send(trio.current_time())
        if not datagrams:
            return
        payloads = [data for data, _ in datagrams]
        self.bytes_sent += sum(map(len, payloads))
        if self.path is not None:
            self._send(self.path.route(payloads, trio.current_time()))
        else:
            self.datagrams_sent += len(datagrams)
            send_batch(self.sock, datagrams, gso=self._gso)  # type: ignore[arg-type]

    def _send(self, datagrams: list[tuple[bytes, object]]) -> None:
        """Server side: out through the dispatcher's socket."""
        if datagrams:
            assert self.send_datagrams is not None
            self.datagrams_sent += len(datagrams)
            self.send_datagrams(datagrams)

    def _process_events(self) -> bool:
        """Hand the engine's events on; True if a stream received data."""
        delivered = False
        while (event := self.quic.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(event)
            if isinstance(event, events.StreamDataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is None:
                    if not self._may_open(event.stream_id):
                        break
                    stream = QuicStream(self, event.stream_id)
                    self.streams[event.stream_id] = stream
                    self.stream_opened.set()
                    if self.accept_handler is not None:
                        self.accept_handler(stream)
                stream._on_data(event.data, event.end_stream)
                delivered = True
            elif isinstance(event, events.StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_error(ConnectionLost(f"peer reset the stream ({event.error_code})"))
            elif isinstance(event, events.PingAcknowledged) and self.path is not None:
                moves = self.path.moves
                self._send(self.path.acknowledged(event.uid))
                if self.path.moves != moves:
                    # Debug only: a client decides how often it moves; the line at the
                    # connection's end counts the moves.
                    log.debug("%s: the client is now at %s (move %d)", self.label,
                             self.path.addr, self.path.moves)
            elif isinstance(event, events.HandshakeCompleted):
                self.alpn = event.alpn_protocol
                self.session_resumed = bool(event.session_resumed)
                self.early_data_accepted = bool(event.early_data_accepted)
                self.handshake_done.set()
            elif isinstance(event, events.ConnectionTerminated):
                self.close_error_code = event.error_code
                # The peer's words: printable, bounded, before they reach a log line.
                self.close_reason = printable(event.reason_phrase)
                self._fail_streams(ConnectionLost(self._lost_message()))
                self.terminated.set()
        if self.quic.confirmed and not self.confirmed.is_set():
            self.confirmed.set()
        for stream in self.streams.values():
            stream._maybe_writable()
        return delivered

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
        self._fail_streams(ConnectionLost(self._lost_message()))
        self.terminated.set()
        return False

    def _lost_message(self) -> str:
        if self.close_reason:
            return f"QUIC connection to {self.label} closed: {self.close_reason}"
        if self.close_error_code is not None:
            return f"QUIC connection to {self.label} closed (error {self.close_error_code:#x})"
        return f"QUIC connection to {self.label} closed"

    def _fail_streams(self, exc: Exception) -> None:
        for stream in self.streams.values():
            stream._on_error(exc)

    # -- lifetime
    def open_stream(self) -> QuicStream:
        stream_id = self.quic.get_next_available_stream_id()
        stream = QuicStream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    async def aclose(self, reason: str = "closed", *, linger: float = 0.5) -> None:
        """Close, and wait up to ``linger`` seconds (shielded) for the engine to end the
        connection; the CONNECTION_CLOSE is sent at once either way."""
        if not self.terminated.is_set():
            # Sent at once: qh3 may end a closing connection at its next timer without
            # having sent the CONNECTION_CLOSE.
            self._close_now(QuicErrorCode.NO_ERROR, reason)
            self.wake()
            if linger > 0:
                # The shield outside the deadline: inside, it would shield the wait from
                # its own deadline too (seen: 1.8 s for a handshake nobody answered).
                with trio.CancelScope(shield=True), trio.move_on_after(linger):
                    await self.terminated.wait()
        if self._worker_scope is not None:
            self._worker_scope.cancel()
        if self.sock is not None:
            trio.lowlevel.notify_closing(self.sock)  # the worker may be waiting on it
            self.sock.close()

    def abandon(self, reason: str) -> None:
        """End the connection without a word to the peer: nobody may be there to hear
        it (a half-open connection from a spoofed address)."""
        self.close_reason = self.close_reason or reason
        if self._worker_scope is not None:
            self._worker_scope.cancel()

    async def migrate(self, cause: str = "asked to") -> None:
        """Move to a new local UDP socket (new port) and carry on (RFC 9000 section 9).

        A fresh connection id goes with the new path, so it is not linkable to the old
        one (9.5); the server validates the path (8.2) and follows. Logged once the
        server has answered on the new path."""
        if self.sock is None:
            raise RuntimeError("only a client connection migrates")
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

    def _rtt(self) -> float:
        return self.quic.figure("smoothed_rtt") or INITIAL_RTT

    def stats(self) -> dict[str, float | int]:
        """What the engine knows of the path (qh3's native core); 0 for what it does not
        know yet."""

        def get(name: str) -> float:
            return self.quic.figure(name) or 0.0

        return {
            "rtt_ms": round(get("smoothed_rtt") * 1000, 3),
            "cwnd": int(get("congestion_window")),
            "bytes_in_flight": int(get("bytes_in_flight")),
            "lost_packets": int(get("loss_total")),
            "datagrams_sent": self.datagrams_sent,
            "datagrams_received": self.datagrams_received,
        }

