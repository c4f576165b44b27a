"""SMB over QUIC: qh3's sans-I/O QUIC engine driven by trio (MS-SMB2 2.1; RFC 9000).

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
dispatcher on the server (:mod:`quicfs.transport.quic_server`), which routes datagrams by
connection id. The client's socket is never ``connect()``-ed, so the connection can move
to a new local socket (:meth:`QuicDriver.migrate`, RFC 9000 section 9) and the engine
validates the new path itself.

One bidirectional stream carries SMB, framed exactly as on TCP
(:class:`~quicfs.transport.framing.FramedStream` on top of :class:`QuicStream`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import pickle
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnectionError
from qh3.quic.packet import QuicErrorCode

from quicfs.errors import CertificateError, ConnectError, ConnectionLost, UsageError
from quicfs.private import PrivateFileError, PrivateFileMissing, read_private
from quicfs.transport.engine import Engine, new_engine
from quicfs.transport.framing import FramedStream
from quicfs.transport.peer_path import PeerPath

log = logging.getLogger("quicfs.quic")
# qh3 reports every peer close at WARNING under "quic"; a close is not a warning to us,
# and our own log lines say what matters.
logging.getLogger("quic").setLevel(logging.ERROR)

ALPN = "smb"
DEFAULT_PORT = 443
#: The client's flow-control windows (client_configuration).
CLIENT_STREAM_WINDOW = 16 * 1024 * 1024
CLIENT_CONNECTION_WINDOW = 24 * 1024 * 1024
#: Bytes a stream may have queued in the engine, not yet sent, before writers wait.
SEND_HIGH_WATER = 2 * 1024 * 1024
#: Bytes received on a stream and not yet read, beyond which the driver holds the
#: engine's events, and so the peer's flow-control credit (engine.py); it lets them go
#: again below half of it.
RECV_HIGH_WATER = 1024 * 1024
#: RFC 9002 6.2.2 kInitialRtt: the RTT assumed before there is a sample.
INITIAL_RTT = 0.333
#: Events a held engine may queue (engine.py). An honest peer blocked by flow control
#: sends ACKs (no events) and a window's worth of STREAM frames (some 4,500 of them);
#: a peer that sends tens of thousands of tiny frames meanwhile is closed.
MAX_HELD_EVENTS = 50_000
#: A PING after this much silence keeps NAT bindings and the idle timer alive.
KEEPALIVE_INTERVAL = 10.0
IDLE_TIMEOUT = 30.0
ACTIVE_CID_LIMIT = 8
#: Linux UDP_SEGMENT (GSO) and UDP_GRO socket options, include/uapi/linux/udp.h.
UDP_SEGMENT = 103
UDP_GRO = 104
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
_RECV_SIZE = 65536


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


# ---------------------------------------------------------------------------- TLS options
@dataclass(frozen=True, slots=True)
class QuicTLSOptions:
    """How the server's certificate is checked, and the client's own certificate."""

    cafile: str | None = None
    fingerprint: str | None = None  # sha256 of the DER certificate, "sha256:HEX"
    insecure: bool = False
    cert: str | None = None
    key: str | None = None

    def policy_id(self) -> str:
        """Names how the server was verified. A session ticket is reused only under the
        same policy: resumption skips the certificate (RFC 8446 2.2), so a ticket won
        under one pin or CA must not stand in for another."""
        import hashlib

        text = f"{self.pinned_sha256()}|{self.cafile}|{self.insecure}|{self.cert}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pinned_sha256(self) -> str | None:
        if not self.fingerprint:
            return None
        text = self.fingerprint.strip().lower()
        if text.startswith("sha256:"):
            text = text[7:]
        text = text.replace(":", "")
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(
                f"bad fingerprint '{self.fingerprint}': expected sha256:<64 hex digits>"
            )
        return text


def client_configuration(server_name: str, tls: QuicTLSOptions, *,
                         max_datagram_size: int | None = None,
                         qlog_dir: str | None = None,
                         session_ticket: object | None = None) -> QuicConfiguration:
    import ssl

    config = QuicConfiguration(
        alpn_protocols=[ALPN],
        is_client=True,
        server_name=server_name,
        idle_timeout=IDLE_TIMEOUT,
        # 1452 B fits an Ethernet path. A larger max_datagram_size= is faster on paths
        # that carry it, but qh3 2.1 then cannot migrate the connection.
        max_datagram_size=max_datagram_size or 1452,
        # Spare connection ids let either side move to a new path (RFC 9000 5.1.1, 9.5).
        active_connection_id_limit=ACTIVE_CID_LIMIT,
        probe_datagram_size=True,
        # Flow-control windows (RFC 9000 4.1) for what the server sends us: a path
        # carries rate x RTT in flight, and qh3's default stream window (6 MiB) caps a
        # 100 ms path near 60 MB/s. 16 MiB covers 1 Gbit/s at 130 ms; memory stays
        # bounded by it, as the driver withholds credit while a reader is behind.
        max_stream_data=CLIENT_STREAM_WINDOW,
        max_data=CLIENT_CONNECTION_WINDOW,
    )
    pin = tls.pinned_sha256()
    if tls.insecure:
        log.warning("insecure: the server's certificate is NOT verified (for tests only)")
        config.verify_mode = ssl.CERT_NONE
    elif pin is not None:
        # A pinned certificate stands on its own: no CA, no name (like ssh's known_hosts).
        config.verify_mode = ssl.CERT_NONE
        config.assert_fingerprint = pin
    else:
        config.verify_mode = ssl.CERT_REQUIRED
        if tls.cafile:
            if not os.path.isfile(tls.cafile):
                raise UsageError(f"cafile {tls.cafile}: no such file")
            config.cafile = tls.cafile
        else:
            paths = ssl.get_default_verify_paths()
            if paths.cafile:
                config.cafile = paths.cafile
            elif paths.capath:
                config.capath = paths.capath
    if tls.cert or tls.key:
        if not (tls.cert and tls.key):
            raise UsageError("a client certificate needs both cert= and key=")
        for path in (tls.cert, tls.key):
            if not os.path.isfile(path):
                raise UsageError(f"{path}: no such file")
        config.load_cert_chain(tls.cert, tls.key)
    if qlog_dir:
        from qh3.quic.logger import QuicFileLogger

        os.makedirs(qlog_dir, exist_ok=True)
        config.quic_logger = QuicFileLogger(qlog_dir)
    if session_ticket is not None:
        config.session_ticket = session_ticket  # type: ignore[assignment]
    return config


# ---------------------------------------------------------------------------- tickets
#: A ticket file larger than this is not a ticket of ours (they are some hundreds of bytes).
MAX_TICKET_FILE = 64 * 1024
#: What a stored ticket is made of; anything else in the file is refused unread.
_TICKET_CLASSES = frozenset({("qh3.tls", "SessionTicket"), ("qh3.tls", "CipherSuite"),
                             ("datetime", "datetime"), ("datetime", "timezone"),
                             ("datetime", "timedelta")})


class _TicketUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _TICKET_CLASSES:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a ticket")
        return super().find_class(module, name)


class TicketStore:
    """TLS session tickets per server, one 0600 file each under the user's cache dir, so
    the next connection resumes (a shorter handshake, no certificate) instead of a full
    one.

    A ticket holds a resumption secret, and its file is read with pickle: a file is used
    only if it is a regular file (never through a symlink), owned by this user and
    readable by nobody else (private.py), and only the classes a ticket is made of are
    unpickled."""

    def __init__(self, directory: str | None = None) -> None:
        base = directory or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        self.dir = Path(base) / "quicfs" / "tickets" if directory is None else Path(base)

    def _path(self, server: str, port: int, policy: str) -> Path:
        name = f"{server}_{port}_{policy}"
        safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)
        return self.dir / safe

    def load(self, server: str, port: int, policy: str) -> object | None:
        path = self._path(server, port, policy)
        try:
            data = read_private(path, max_size=MAX_TICKET_FILE)
        except PrivateFileMissing:
            return None
        except PrivateFileError as exc:
            log.warning("session ticket %s not used: it%s", path, exc.detail)
            return None
        try:
            return _TicketUnpickler(io.BytesIO(data)).load()
        except Exception:
            return None  # damaged, or not a ticket: a full handshake, and a new one

    def save(self, server: str, port: int, policy: str, ticket: object) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self._path(server, port, policy)
            tmp = path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # left by a crash; O_EXCL below never follows a planted link
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pickle.dumps(ticket))
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError) as exc:
            log.debug("cannot store session ticket: %s", exc)

    def forget(self, server: str, port: int, policy: str) -> None:
        with contextlib.suppress(OSError):
            self._path(server, port, policy).unlink()


def start_engine(config: QuicConfiguration, addr: object, now: float, cc: str | None = None,
                 **kwargs: object) -> Engine:
    """A client engine for controller ``cc`` (engine.py) with its ClientHello built (qh3
    builds it in ``connect``)."""
    quic: Engine = new_engine(cc, peer=addr, configuration=config, **kwargs)
    quic.connect(addr, now=now)  # type: ignore[arg-type]
    return quic


def offerable(config: QuicConfiguration, ticket: object, addr: object,
              cc: str | None = None) -> bool:
    """A ClientHello offering ``ticket`` can be built. qh3 2.1 builds it in 2048 bytes, and
    a large ticket does not fit: quic-go puts the client's certificate chain in its
    tickets (some 550 bytes), and every later connection would fail. About 1 ms."""
    trial = replace(config, session_ticket=ticket, quic_logger=None)
    try:
        start_engine(trial, addr, 0.0, cc)
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------- the driver
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
                    data, ancdata, _flags, addr = sock.recvmsg(_RECV_SIZE, GRO_CMSG_SPACE)
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


def gro_segment(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:2], "little") if len(data) == 2 else \
                struct.unpack("=i", data[:4])[0]
    return 0


def new_udp_socket(family: int, bind: tuple[str, int] | None = None, *,
                   gro: bool = True) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if gro:
        try:
            # The kernel may hand us runs of datagrams as one buffer (UDP GRO).
            sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        except OSError:
            pass
    if bind is None:
        bind = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
    sock.bind(bind)
    return sock


def send_batch(sock: socket.socket, datagrams: list[tuple[bytes, object]], *,
               gso: bool) -> None:
    """Send datagrams; runs of equal-size datagrams to one address go as one GSO
    super-buffer where the kernel takes it (UDP_SEGMENT). A full socket buffer drops the
    rest: QUIC's loss recovery resends (RFC 9002), as a router's queue would."""
    i, count = 0, len(datagrams)
    while i < count:
        data, addr = datagrams[i]
        j = i + 1
        if gso:
            size = len(data)
            # The kernel takes at most 64 segments and 64 KiB in one GSO send.
            end = min(count, i + max(1, min(64, 65000 // size)))
            while j < end:
                following, to = datagrams[j]
                if to != addr or len(following) > size:
                    break
                j += 1
                if len(following) < size:
                    break  # the last segment may be shorter
        try:
            if j - i > 1:
                # The datagrams go as the iovecs of one message, not joined: the kernel
                # gathers them and cuts the whole into segments (no copy of ours).
                sock.sendmsg([d for d, _ in datagrams[i:j]],
                             [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(data)))],
                             0, addr)
            else:
                sock.sendto(data, addr)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP) \
                    and j - i > 1:
                gso = False  # the kernel or path refuses GSO: one by one from now on
                continue
            log.debug("sendto %s: %s", addr, exc)
        i = j


# ---------------------------------------------------------------------------- the stream
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
        self._send_conflict = trio.lowlevel.ParkingLot()
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
            self._on_error(ConnectionLost(self.driver._lost_message()))
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


# ---------------------------------------------------------------------------- the transport
class QuicTransport(FramedStream):
    """A MessageTransport over one QUIC bidirectional stream."""

    def __init__(self, driver: QuicDriver, stream: QuicStream, peer: str, *,
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


def _peer_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_certificate(driver: QuicDriver) -> object | None:
    """The server's certificate as ``cryptography`` sees it, if the handshake got that far
    (qh3 keeps it even when verification failed)."""
    from cryptography import x509

    try:
        cert = driver.quic.get_peercert()
        if cert is None:
            return None
        return x509.load_der_x509_certificate(bytes(cert.public_bytes()))
    except Exception:
        return None


def _certificate_problem(cert: object, server_name: str) -> str | None:
    """What is wrong with ``cert`` for ``server_name``: time or name; None if neither."""
    import datetime
    import ipaddress

    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        return f"has expired (not valid after {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
    if cert.not_valid_before_utc > now:
        return f"is not yet valid (not before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        wanted_ip = str(ipaddress.ip_address(server_name))
        ok = wanted_ip in ips
    except ValueError:
        name = server_name.lower().rstrip(".")
        ok = any(d.lower() == name or (d.startswith("*.") and name.endswith(d[1:].lower())
                                       and name.count(".") == d.count("."))
                 for d in dns)
    if not ok:
        names = ", ".join(dns + ips) or "no names"
        return f"is not valid for that name (it is for {names})"
    return None


#: TLS alerts (RFC 8446 6.2) with which a server refuses a client's certificate.
CLIENT_CERTIFICATE_ALERTS = {
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 48: "unknown_ca",
    49: "access_denied", 116: "certificate_required",
}


def describe_failure(driver: QuicDriver, label: str, within: float,
                     server_name: str = "", tls: QuicTLSOptions | None = None
                     ) -> ConnectError:
    """The error, in one line, for a QUIC handshake that failed (RFC 9001 4.8: TLS alerts
    arrive as CRYPTO_ERROR 0x100 + alert); a rejected certificate is examined to say why.
    A certificate's failure is a :class:`CertificateError`: final (connect.py)."""
    reason = (driver.close_reason or "").strip()
    code = driver.close_error_code
    low = reason.lower()
    alert = code - 0x100 if code is not None and 0x100 <= code < 0x200 else None
    if code is None and not reason:
        return ConnectError(f"no QUIC answer from {label} within {within:g} s — is UDP "
                            f"{label.rsplit(':', 1)[-1]} blocked?")
    if driver.handshake_done.is_set() and alert in CLIENT_CERTIFICATE_ALERTS:
        # Our side of the handshake ended, so the server's certificate passed our
        # checks; the server then refused ours with an alert (RFC 8446 4.4.2.4).
        what = f"TLS alert {alert}, {CLIENT_CERTIFICATE_ALERTS[alert]}"
        if tls is None or not tls.cert:
            return CertificateError(
                f"{label} refused the connection without a client certificate ({what}): "
                "give one it accepts with cert= and key=")
        return CertificateError(f"{label} refused the client certificate {tls.cert} "
                                f"({what}): give one it accepts with cert= and key=")
    if "fingerprint" in low:
        return CertificateError(f"certificate of {label} does not match the pinned "
                                "fingerprint")
    certificate_words = ("certificate", "issuer", "expired", "not yet valid", "unknown ca",
                         "self-signed", "self signed", "verify", "untrusted", "server name",
                         "hostname")  # aioquic: "hostname 'x' doesn't match ..."
    if any(w in low for w in certificate_words):
        cert = _peer_certificate(driver)
        problem = _certificate_problem(cert, server_name) if cert is not None else None
        if problem is not None:
            return CertificateError(f"certificate of {label} {problem}")
        if "expired" in low or "not yet valid" in low:
            return CertificateError(f"certificate of {label} has expired or is not yet "
                                    f"valid: {reason}")
        if "name" in low:
            return CertificateError(f"certificate of {label} is not valid for that name: "
                                    f"{reason}")
        return CertificateError(f"certificate of {label} is not signed by a trusted CA: "
                                f"{reason}")
    if code == 0x100 + 120 or "alpn" in low or "application protocol" in low:
        return ConnectError(f"{label} refused ALPN 'smb': it does not serve SMB over QUIC")
    detail = reason or (f"TLS alert {alert}" if alert is not None else f"error {code:#x}")
    return ConnectError(f"QUIC handshake with {label} failed: {detail}")


def _transport_error(driver: QuicDriver) -> bool:
    """The connection ended with a transport error (RFC 9000 20.1), ours or the peer's,
    not a TLS alert (0x100 + alert: certificates, ALPN, versions), which would end the
    next handshake the same way. Loss causes some: qh3's server refuses a first
    Initial that carries no CRYPTO frame (PROTOCOL_VIOLATION), which it gets when the
    ClientHello's datagrams and the first of their copies are lost."""
    code = driver.close_error_code
    return (code is not None and 0 < code < 0x100) or \
        (driver.close_reason or "").startswith("QUIC engine error")


async def _handshake(quic: Engine, addr: object, family: int, label: str, within: float,
                     nursery: trio.Nursery) -> QuicDriver:
    """Drive ``quic``'s handshake, the worker in ``nursery``. The driver comes back with
    ``confirmed`` set, or closed (failed, or not confirmed within ``within``)."""
    driver = QuicDriver(quic, sock=new_udp_socket(family), peer=addr,  # type: ignore[arg-type]
                        label=label)
    await nursery.start(driver.run)
    ok = False
    try:
        with trio.move_on_after(within):
            await wait_for_any(driver.confirmed, driver.terminated)
        ok = driver.confirmed.is_set() and not driver.terminated.is_set()
    finally:
        if not ok:
            # Said at once, not waited for: the caller (a race's winner among them)
            # goes on now.
            await driver.aclose("handshake abandoned", linger=0)
    return driver


async def open_quic(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    nursery: trio.Nursery,
    server_name: str | None = None,
    tls: QuicTLSOptions | None = None,
    within: float = 5.0,
    qlog_dir: str | None = None,
    max_datagram_size: int | None = None,
    tickets: TicketStore | None = None,
    cc: str | None = None,
) -> QuicTransport:
    """Handshake with ``host:port`` (TLS 1.3, ALPN smb) and open the SMB stream.

    The transport is ready once the handshake is confirmed (RFC 9001 4.1.2): a server that
    refuses our certificate does so after our Finished, and that must be a handshake
    failure, not a lost connection. The driver's worker runs in ``nursery``; closing the
    transport ends it.

    A stored session ticket makes the handshake a resumed one (RFC 8446 2.2), without
    0-RTT (engine.py). If it fails once the server has answered, the ticket is
    forgotten and a full handshake follows: a ticket never costs a connection. A full
    handshake that a transport error ended gets one more try too. ``cc`` names the
    congestion controller, and so the engine (engine.py)."""
    tls = tls or QuicTLSOptions()
    label = _peer_label(host, port)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve host of {label}: {exc.strerror or exc}") from None
    family, _, _, _, addr = infos[0]
    name = server_name or host
    store = tickets if tickets is not None else TicketStore()
    policy = tls.policy_id()
    # An unverified server gets no ticket kept and none offered.
    ticket = None if tls.insecure else store.load(name, port, policy)
    config = client_configuration(name, tls, max_datagram_size=max_datagram_size,
                                  qlog_dir=qlog_dir, session_ticket=ticket)

    def keep_ticket(t: object) -> None:
        if tls.insecure:
            return
        if not offerable(config, t, addr, cc):
            # Kept, it would fail every later connection; a full handshake costs an RTT.
            log.info("%s: its session ticket is too large to offer: not kept", label)
            return
        store.save(name, port, policy, t)

    def engine() -> Engine:
        return start_engine(config, addr, trio.current_time(), cc,
                            session_ticket_handler=keep_ticket)

    def without_ticket() -> Engine:
        store.forget(name, port, policy)
        config.session_ticket = None  # type: ignore[assignment]
        return engine()

    try:
        quic = engine()
    except Exception as exc:
        if ticket is None:
            raise ConnectError(f"QUIC handshake with {label} could not start: "
                               f"{type(exc).__name__}: {exc}") from exc
        # A stored ticket that cannot be offered (too large, damaged): drop it and do a
        # full handshake, now and from now on.
        log.warning("%s: stored session ticket unusable (%s: %s): dropped, full handshake",
                    label, type(exc).__name__, exc)
        ticket, quic = None, without_ticket()
    driver = await _handshake(quic, addr, family, label, within, nursery)
    if not driver.confirmed.is_set() and driver.quic.authenticated \
            and (ticket is not None or _transport_error(driver)):
        failure = describe_failure(driver, label, within, name, tls)
        if not isinstance(failure, CertificateError):
            # The server answered, so it is there: a full handshake may still succeed
            # where a resumed one failed for whatever reason, or a full one for a
            # transport error.
            log.info("%s: %s failed (%s): a full handshake instead", label,
                     "resumed handshake" if ticket is not None else "handshake", failure)
            driver = await _handshake(without_ticket(), addr, family, label, within, nursery)
    if not driver.confirmed.is_set():
        raise describe_failure(driver, label, within, name, tls)
    if driver.alpn != ALPN:
        await driver.aclose("no SMB", linger=0)
        raise ConnectError(f"{label} refused ALPN 'smb': it does not serve SMB over QUIC")
    stream = driver.open_stream()
    log.debug("QUIC to %s ready (resumed=%s)", label, driver.session_resumed)
    return QuicTransport(driver, stream, label, verified=not tls.insecure)
