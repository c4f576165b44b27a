"""The driver: one QUIC connection's engine driven by trio (RFC 9000), the part both
sides share. :class:`~quicfs.transport.quic.client_driver.ClientDriver` and
:class:`~quicfs.transport.quic.server_driver.ServerDriver` say where each side's
datagrams come from and go to. How the parts work together: the package's docstring.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio
from qh3.quic import events
from qh3.quic.connection import QuicConnectionError
from qh3.quic.packet import QuicErrorCode

from quicfs.errors import ConnectionLost
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.stream import QuicStream

log = logging.getLogger("quicfs.quic")
# qh3 reports every peer close at WARNING under "quic"; a close is not a warning to us,
# and our own log lines say what matters.
logging.getLogger("quic").setLevel(logging.ERROR)

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


def printable(text: str, limit: int = 200) -> str:
    """A peer's words made safe for one log line: control characters escaped, bounded."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Batch:
    """A run of datagrams from one address, fed to the engine in one call
    (``receive_many_datagrams``, :meth:`QuicDriver._receive_many`) when the address
    changes or the run ends."""

    __slots__ = ("addr", "datas", "driver", "now")

    def __init__(self, driver: QuicDriver, now: float) -> None:
        self.driver = driver
        self.now = now
        self.datas: list[bytes] = []
        self.addr: object = None

    def start(self, addr: object) -> None:
        """What follows comes from ``addr``: a run from another address goes first."""
        if addr != self.addr:
            self.flush()
            self.addr = addr

    def flush(self) -> None:
        if self.datas:
            self.driver._receive_many(self.datas, self.addr, self.now)
            self.datas = []


class QuicDriver:
    """One QUIC connection and the task that drives it. A subclass says where input comes
    from (:meth:`_wait_input`, :meth:`_drain_input`), where output goes
    (:meth:`_transmit`) and when what writers queued is sent (:meth:`queued`)."""

    def __init__(self, quic: Engine, *, peer: tuple[str, int] | tuple[str, int, int, int],
                 label: str) -> None:
        self.quic = quic
        self.peer_addr = peer
        self.label = label
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
        self.bytes_sent = 0
        self.bytes_received = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        #: trio time of the last datagram from the peer (any: ACKs prove it alive).
        self.last_heard = trio.current_time()
        self.alpn: str | None = None
        self.session_resumed = False
        self.early_data_accepted = False
        self._wake_scope: trio.CancelScope | None = None
        self._wake_pending = False
        self._worker_scope: trio.CancelScope | None = None
        self._last_rx = trio.current_time()
        self.on_event: Callable[[events.QuicEvent], None] | None = None
        self._engine_error: BaseException | None = None

    @property
    def engine_error(self) -> BaseException | None:
        """What the engine raised in another task's call (:meth:`_guarded`), until the
        worker ends the connection with it."""
        return self._engine_error

    # -- called by other tasks
    def wake(self) -> None:
        self._wake_pending = True
        if self._wake_scope is not None:
            self._wake_scope.cancel()

    def queued(self) -> None:
        """A stream queued data in the engine: send it now (:meth:`kick`) or on the
        worker's next pass (:meth:`wake`), as suits the side."""
        raise NotImplementedError

    def kick(self) -> None:
        """Send what the engine has to send now, from the caller's task, and move the
        worker's wait to the engine's new timer. Cheaper than :meth:`wake`: the worker
        need not run."""
        if not self._guarded(self._flush):
            return
        scope = self._wake_scope
        if scope is not None:
            scope.deadline = self._deadline()

    def _guarded(self, step: Callable[[], object]) -> bool:
        """Run ``step`` in another task's name; False if it failed. A fault in it is this
        connection's, never the caller's: raised in the worker, which ends the
        connection."""
        try:
            step()
        except BaseException as exc:
            if not is_fault(exc):
                raise
            if self._engine_error is None:
                self._engine_error = exc
            self.wake()
            return False
        return True

    def hold_input(self) -> None:
        """A stream's reader is behind: withhold the peer's credit (engine.py)."""
        self.quic.hold = True

    def release_input(self) -> None:
        """The reader caught up: hand on what the engine held, and send the credit."""
        if self.quic.hold:
            self.quic.release()
            self._process_events()
            self.kick()

    def probe(self) -> None:
        """A PING, which the peer's QUIC stack ACKs at once (RFC 9000 19.2) whatever the
        SMB server behind it is busy with."""
        self._ping()
        self.wake()

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
                self._fail_streams(ConnectionLost(self.lost_message()))
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
        self._poll_path(now)
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
        return min(timer if timer is not None else math.inf, keepalive,
                   self._path_deadline())

    def _ping(self, uid: int = 0) -> None:
        try:
            self.quic.send_ping(uid)
        except Exception as exc:
            log.debug("%s: ping: %s", self.label, exc)

    # -- each side's input and output
    async def _wait_input(self) -> None:
        """Return when input may be waiting (the worker's wait is cancelled otherwise)."""
        raise NotImplementedError

    def _drain_input(self, now: float) -> None:
        """Feed everything waiting to the engine (:meth:`_receive_many`)."""
        raise NotImplementedError

    def _transmit(self, datagrams: list[tuple[bytes, object]]) -> None:
        """Send what the engine made, to the addresses it named."""
        raise NotImplementedError

    def _poll_path(self, now: float) -> None:
        """What following the peer's address has to send now (server_driver.py)."""

    def _path_deadline(self) -> float:
        """When :meth:`_poll_path` next has something to do."""
        return math.inf

    def _acknowledged(self, uid: int) -> None:
        """The peer acknowledged our PING ``uid`` (RFC 9000 19.2)."""

    def _may_open(self, stream_id: int) -> bool:
        """The peer opens ``stream_id``: True if it may (server_driver.py limits it)."""
        return True

    # -- input
    def _account(self, nbytes: int, count: int, now: float) -> None:
        self.bytes_received += nbytes
        self.datagrams_received += count
        self._last_rx = self.last_heard = now

    def _receive_many(self, batch: list[bytes], addr: object, now: float) -> int:
        """Feed a run of datagrams from ``addr``; the packets the engine authenticated and
        had not seen."""
        self._account(sum(map(len, batch)), len(batch), now)
        fresh = None
        if len(batch) > 1 and addr == self.peer_addr:
            try:
                fresh = self.quic.receive(batch, addr, now)
            except ValueError:
                pass  # one by one below
        if fresh is None:
            fresh = self._receive_each(batch, addr, now)
        return fresh

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

    # -- output
    def _flush(self) -> None:
        datagrams = self._made()
        if datagrams:
            self._transmit(datagrams)

    def _made(self) -> list[tuple[bytes, object]]:
        """What the engine has to send now, counted as sent."""
        datagrams = self.quic.datagrams_to_send(trio.current_time())
        self.bytes_sent += sum(len(data) for data, _ in datagrams)
        return datagrams

    # -- the engine's events
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
            elif isinstance(event, events.PingAcknowledged):
                self._acknowledged(event.uid)
            elif isinstance(event, events.HandshakeCompleted):
                self.alpn = event.alpn_protocol
                self.session_resumed = bool(event.session_resumed)
                self.early_data_accepted = bool(event.early_data_accepted)
                self.handshake_done.set()
            elif isinstance(event, events.ConnectionTerminated):
                self.close_error_code = event.error_code
                # The peer's words: printable, bounded, before they reach a log line.
                self.close_reason = printable(event.reason_phrase)
                self._fail_streams(ConnectionLost(self.lost_message()))
                self.terminated.set()
        if self.quic.confirmed and not self.confirmed.is_set():
            self.confirmed.set()
        for stream in self.streams.values():
            stream._maybe_writable()
        return delivered

    def lost_message(self) -> str:
        """What a stream's user is told when the connection ends."""
        if self.close_reason:
            return f"QUIC connection to {self.label} closed: {self.close_reason}"
        if self.close_error_code is not None:
            return f"QUIC connection to {self.label} closed (error {self.close_error_code:#x})"
        return f"QUIC connection to {self.label} closed"

    def _fail_streams(self, exc: Exception) -> None:
        for stream in self.streams.values():
            stream._on_error(exc)

    # -- lifetime
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
