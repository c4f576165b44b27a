"""A QUIC server on the same trio + qh3 stack: one UDP socket, many connections.

The dispatcher reads datagrams and routes each by its destination connection id to a
:class:`~quicfs.transport.quic.server_driver.ServerDriver`, feeding its engine in the
dispatcher's own task once the socket is drained (the driver's worker handles the timers); an
Initial packet with an unknown id starts a new connection (RFC 9000 7, 17.2.2). Routing
is by connection id, never by address, so a client that changes address (migration, NAT
rebinding) stays on its connection; its driver follows it there (peer_path.py). Each
stream a client opens is handed to ``handler``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable

import trio
from qh3._hazmat import pull_quic_header
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.packet import QuicPacketType, encode_quic_retry, encode_quic_version_negotiation

from quicfs.refusals import Refusals
from quicfs.transport.quic.admission import Limits, address_key, first_flight_size, packets_length
from quicfs.transport.quic.configuration import MAX_DATAGRAM, server_configuration
from quicfs.transport.quic.driver import is_fault
from quicfs.transport.quic.engine import new_engine
from quicfs.transport.quic.retry import RetryTokens
from quicfs.transport.quic.server_driver import ServerDriver
from quicfs.transport.quic.stream import QuicStream
from quicfs.transport.quic.tickets import ServerTickets
from quicfs.transport.quic.udp import (
    GRO_CMSG_SPACE,
    RECV_SIZE,
    gro_segment,
    new_udp_socket,
    send_batch,
)

log = logging.getLogger("quicfs.quic.server")

Handler = Callable[[QuicStream, str], Awaitable[None]]
#: An Initial seen again this long after its Retry is the client's retransmission (its
#: first PTO is ~1 s, RFC 9002 6.2.2): the Retry was lost, and is sent again. Sooner, it
#: is the second datagram of the same ClientHello, which gets no second Retry.
RETRY_AGAIN_AFTER = 0.25
#: For how many clients at most an answered Retry is remembered.
MAX_RETRIED = 4096


def _label(addr: object) -> str:
    host, port = addr[0], addr[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class QuicServer:
    def __init__(self, sock: socket.socket, config: QuicConfiguration, handler: Handler,
                 nursery: trio.Nursery, *, limits: Limits | None = None,
                 refusals: Refusals | None = None, cc: str | None = None) -> None:
        self.sock = sock
        self.config = config
        self.handler = handler
        self.nursery = nursery
        self.limits = limits or Limits()
        self.refusals = refusals or Refusals(log)
        #: The congestion controller of every connection (engine.py).
        self.cc = cc
        self.routes: dict[bytes, ServerDriver] = {}
        self.connections: set[ServerDriver] = set()
        #: Connections whose handshake has not completed.
        self.handshaking: set[ServerDriver] = set()
        self.per_address: Counter[str] = Counter()
        self.tickets = ServerTickets()
        self.tokens = RetryTokens()
        self.first_flight = first_flight_size(config)
        self._vn_budget = self.limits.vn_per_second
        self._vn_at = trio.current_time()
        #: Initials that did not decrypt in the current second: each costs a TLS set-up
        #: before it fails, so many of them call for Retry as handshakes do.
        self._junk = 0
        self._junk_second = 0
        #: (address, connection id) of the Initials answered with a Retry lately: a
        #: ClientHello in two datagrams gets one Retry, not two (a client processes
        #: one, RFC 9000 17.2.5.2; a second confuses qh3's client with 0-RTT).
        self._retried: OrderedDict[tuple[object, bytes], float] = OrderedDict()

    def _send(self, datagrams: list[tuple[bytes, object]]) -> None:
        send_batch(self.sock, datagrams, gso=True)

    async def serve(self) -> None:
        fed: dict[ServerDriver, None] = {}  # in order of arrival
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            now = trio.current_time()
            for _ in range(256):
                try:
                    data, ancdata, _flags, addr = self.sock.recvmsg(RECV_SIZE, GRO_CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                # GRO hands a run of one client's datagrams (one address and port, equal
                # sizes but the last) as one buffer: one syscall for ~40 datagrams. Each
                # is still routed on its own, by its own connection id, as if it had
                # come alone.
                segment = gro_segment(ancdata)
                if segment and len(data) > segment:
                    pieces = [data[i:i + segment] for i in range(0, len(data), segment)]
                else:
                    pieces = [data]
                for piece in pieces:
                    driver = self._dispatch_safely(piece, addr, now)
                    if driver is not None:
                        fed[driver] = None
            # Each connection takes in all it got in one engine turn, here (driver.py).
            for driver in fed:
                if not driver.terminated.is_set():
                    driver.take_input()
            fed.clear()

    def _dispatch_safely(self, data: bytes, addr: object, now: float) -> ServerDriver | None:
        try:
            return self._dispatch(data, addr, now)
        except BaseException as exc:
            if not is_fault(exc):
                raise
            # A datagram we failed on is dropped; the server goes on.
            self.refusals.note("datagram the server failed on",
                               f"from {_label(addr)}: {type(exc).__name__}: {exc}", now)
            log.debug("dispatch failed", exc_info=True)
            return None

    def _dispatch(self, data: bytes, addr: object, now: float) -> ServerDriver | None:
        """Route a datagram to its connection; None if there is none to feed (yet)."""
        try:
            version, ptype, _, dcid, scid, token, *_ = pull_quic_header(
                data, 0, self.config.connection_id_length
            )
        except ValueError:
            self.refusals.note("unreadable datagram", f"{len(data)} bytes from {_label(addr)}",
                               now)
            return None
        driver = self.routes.get(dcid)
        if driver is not None:
            driver.deliver(data, addr)
            return driver
        if version is None:
            self.refusals.note("packet for no connection", f"from {_label(addr)}", now)
        elif version == 0:
            # Version Negotiation is never answered (RFC 9000 6.1): two servers, or a
            # server and a spoofed copy of itself, would answer each other for ever.
            self.refusals.note("Version Negotiation packet ignored", f"from {_label(addr)}",
                               now)
        elif version not in self.config.supported_versions:
            self._negotiate_version(data, addr, dcid, scid, now)
        elif ptype != QuicPacketType.INITIAL or len(data) < 1200:
            # A client's first datagram is an Initial of at least 1200 bytes (14.1).
            self.refusals.note("packet for no connection", f"from {_label(addr)}", now)
        else:
            self._admit(data, addr, dcid, scid, token, version, now)
        return None

    def _negotiate_version(self, data: bytes, addr: object, dcid: bytes, scid: bytes,
                           now: float) -> None:
        """Version Negotiation (RFC 9000 6.1), only for a datagram big enough to be a
        client's first (14.1: smaller ones are not answered, so the answer never
        outweighs what prompted it), and at most ``vn_per_second``."""
        if len(data) < 1200:
            self.refusals.note("unknown QUIC version in a small datagram",
                               f"from {_label(addr)}", now)
            return
        rate = self.limits.vn_per_second
        self._vn_budget = min(rate, self._vn_budget + (now - self._vn_at) * rate)
        self._vn_at = now
        if self._vn_budget < 1:
            self.refusals.note("Version Negotiation over its rate", f"to {_label(addr)}",
                               now)
            return
        self._vn_budget -= 1
        self._send([(encode_quic_version_negotiation(
            source_cid=dcid, destination_cid=scid,
            supported_versions=self.config.supported_versions), addr)])

    def _admit(self, data: bytes, addr: object, dcid: bytes, scid: bytes, token: bytes,
               version: int, now: float) -> None:
        """A new connection's first Initial: within the limits, with a Retry first if
        asked, and only if the engine can decrypt it (no state for one it cannot)."""
        limits = self.limits
        peer = _label(addr)
        host = address_key(addr)
        if len(self.connections) >= limits.max_connections:
            self.refusals.note("refused: --max-connections reached", f"from {peer}", now)
            return
        if self.per_address[host] >= limits.max_per_address:
            self.refusals.note("refused: --max-per-address reached", f"from {peer}", now)
            return
        odcid, retry_cid = dcid, None
        if token:
            original = self.tokens.check(addr, token, dcid, now)
            if original is not None:
                odcid, retry_cid = original, dcid
        # Until its address is validated a client may be sent three times what it sent
        # (RFC 9000 8.1), and qh3 2.1 counts its packets toward that, not its datagram,
        # and fails the connection ("packet builder capacity exhausted") rather than
        # wait when our first flight does not fit: a client that pads its first datagram
        # with bytes after its Initial (14.1; aioquic does) or a long certificate chain
        # would never get an answer. After a Retry the address is validated: no limit.
        budget = 3 * packets_length(data, self.config.connection_id_length)
        if retry_cid is None and (
            limits.retry == "always"
            or (limits.retry == "auto" and (len(self.handshaking) >= limits.retry_threshold
                                            or self._junk >= limits.retry_threshold))
            or budget < MAX_DATAGRAM
        ):
            self._retry(addr, version, dcid, scid, now)
            return
        # Between the two, the engine is tried: a resumed handshake's flight (no
        # certificate) may fit where a full one would not, and answering it without a
        # Retry saves the client a round trip, and its 0-RTT data too (aioquic 1.7.2
        # never sends again 0-RTT data it sent before a Retry).
        trial = retry_cid is None and budget < self.first_flight
        if len(self.handshaking) >= limits.max_handshakes:
            self.refusals.note("refused: --max-handshakes reached", f"from {peer}", now)
            return
        taken: list[object] = []

        def fetch(label: bytes) -> object:
            ticket = self.tickets.take(label)
            if ticket is not None:
                taken.append(ticket)
            return ticket

        quic = new_engine(
            self.cc,
            peer=addr,
            configuration=self.config,
            original_destination_connection_id=odcid,
            retry_source_connection_id=retry_cid,
            max_streams=(1, 0),
            session_ticket_fetcher=fetch,  # type: ignore[arg-type]
            session_ticket_handler=self.tickets.add,
        )
        driver = ServerDriver(quic, peer=addr, label=peer,  # type: ignore[arg-type]
                              max_peer_streams=1)
        answer: list[tuple[bytes, object]] = []  # held until it is known to be one
        driver.send_datagrams = answer.extend  # type: ignore[assignment]
        # What the first datagram gives is held too, and acted on once the connection is
        # admitted: it may carry 0-RTT data after the Initial (RFC 9001 4.6.1; aioquic
        # coalesces them after a Retry), which opens the stream, and the engine issues
        # its connection ids (RFC 9000 5.1.1) at once. Unheld, the stream was opened
        # with no handler to take it (its NEGOTIATE was never answered) and the ids
        # were never routed.
        early_events: list[events.QuicEvent] = []
        early_streams: list[QuicStream] = []
        driver.on_event = early_events.append
        driver.accept_handler = early_streams.append
        driver.deliver(data, addr)
        driver.take_input()
        if trial and driver.engine_error is not None:
            # Our flight did not fit in what the client's packets allow: a Retry, and
            # the ticket the trial took stays good for the Initial that follows it.
            for ticket in taken:
                self.tickets.add(ticket)  # type: ignore[arg-type]
            self._retry(addr, version, dcid, scid, now)
            return
        if not quic.authenticated:
            second = int(now)
            if second != self._junk_second:
                self._junk_second, self._junk = second, 0
            self._junk += 1
            self.refusals.note("Initial that did not decrypt", f"from {peer}", now)
            return
        code = quic.closing_error
        if code is not None and code < 0x100:
            # A transport error on a first datagram that decrypted: most often a client's
            # later Initial (a probe, an ACK) whose ClientHello was lost on the way, which
            # qh3 refuses as PROTOCOL_VIOLATION ("no CRYPTO frame"). Answering would end
            # that client's handshake; dropping it, with no state kept (RFC 9000 5.2.2),
            # lets the ClientHello it sends again open the connection. A TLS alert
            # (0x100 + alert: no ALPN smb, no common cipher) is answered: it says why.
            self.refusals.note("first Initial refused, not answered",
                               f"from {peer}: error {code:#x}", now)
            return
        driver.send_datagrams = self._send  # type: ignore[assignment]
        if answer:
            self._send(answer)
        self.routes[dcid] = driver
        self.routes[quic.host_cid] = driver
        self.connections.add(driver)
        self.handshaking.add(driver)
        self.per_address[host] += 1

        def on_event(event: events.QuicEvent) -> None:
            if isinstance(event, events.ConnectionIdIssued):
                self.routes[event.connection_id] = driver
            elif isinstance(event, events.ConnectionIdRetired):
                if self.routes.get(event.connection_id) is driver:
                    del self.routes[event.connection_id]

        def on_stream(stream: QuicStream) -> None:
            self.nursery.start_soon(self._run_handler, driver, stream, peer)

        driver.on_event = on_event
        driver.accept_handler = on_stream
        for event in early_events:
            on_event(event)
        for stream in early_streams:
            on_stream(stream)
        self.nursery.start_soon(self._run_driver, driver, host)

    def _retry(self, addr: object, version: int, dcid: bytes, scid: bytes,
               now: float) -> None:
        """Ask the client to prove its address, keeping nothing (RFC 9000 8.1.2) but
        that it was asked, for a few seconds and a bounded number of clients."""
        key = (addr, dcid)
        if now - self._retried.get(key, -math.inf) < RETRY_AGAIN_AFTER:
            self.refusals.note("Initial already answered with a Retry", f"from {_label(addr)}",
                               now)
            return
        self._retried[key] = now
        self._retried.move_to_end(key)
        while len(self._retried) > MAX_RETRIED:
            self._retried.popitem(last=False)
        retry_cid = os.urandom(self.config.connection_id_length)
        token = self.tokens.make(addr, dcid, retry_cid, now)
        packet = encode_quic_retry(version=version, source_cid=retry_cid,
                                   destination_cid=scid, original_destination_cid=dcid,
                                   retry_token=token)
        try:
            self.sock.sendto(packet, addr)  # type: ignore[arg-type]
        except OSError:
            pass  # a full buffer or an unreachable address: a lost Retry, sent again
        self.refusals.note("Retry sent", lambda: f"to {_label(addr)}", now)

    async def _run_driver(self, driver: ServerDriver, host: str) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._limit_handshake, driver)
                await driver.run()
                nursery.cancel_scope.cancel()
        except Exception as exc:
            # One connection's failure is that connection's: logged, and the server
            # serves the rest.
            reason = driver.close_reason or f"{type(exc).__name__}: {exc}"
            self.refusals.note("connection ended by an internal error",
                               f"{driver.label}: {reason}", trio.current_time())
            log.debug("%s: internal error", driver.label, exc_info=True)
        finally:
            self.connections.discard(driver)
            self.handshaking.discard(driver)
            self.per_address[host] -= 1
            if self.per_address[host] <= 0:
                del self.per_address[host]
            for cid in [c for c, d in self.routes.items() if d is driver]:
                del self.routes[cid]
            if not driver.handshake_done.is_set():
                self.refusals.note("handshake failed",
                                   f"{driver.label}: {driver.close_reason or 'no reason given'}",
                                   trio.current_time())

    async def _limit_handshake(self, driver: ServerDriver) -> None:
        limits = self.limits
        with trio.move_on_after(limits.handshake_timeout):
            await driver.handshake_done.wait()
        if not driver.handshake_done.is_set():
            # Half-open for too long (often a spoofed address that never answers):
            # dropped without a word, as nobody may be there to hear it.
            driver.abandon(f"no handshake within {limits.handshake_timeout:g} s")
            return
        self.handshaking.discard(driver)
        # A connection that opens no stream holds a place and serves nobody (the
        # server's keep-alives would hold it for ever).
        with trio.move_on_after(limits.stream_timeout):
            await driver.stream_opened.wait()
        if not driver.stream_opened.is_set():
            self.refusals.note("refused: no stream", f"{driver.label}: none within "
                               f"{limits.stream_timeout:g} s of the handshake",
                               trio.current_time())
            await driver.aclose("no stream opened")

    async def _run_handler(self, driver: ServerDriver, stream: QuicStream, peer: str) -> None:
        try:
            await self.handler(stream, peer)
        except Exception as exc:
            self.refusals.note("connection ended by an internal error",
                               f"{peer}: {type(exc).__name__}: {exc}", trio.current_time())
            log.debug("%s: handler failed", peer, exc_info=True)
            with trio.CancelScope(shield=True):
                await driver.aclose("internal error")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            # One stream per connection: when it is done, so is the connection. The
            # client may close first; what is still on its way to it may need a while.
            with trio.move_on_after(self.limits.linger):
                await driver.terminated.wait()
            with trio.CancelScope(shield=True):
                await driver.aclose("stream done")


async def serve_quic(
    host: str,
    port: int,
    *,
    cert: str,
    key: str,
    handler: Handler,
    limits: Limits | None = None,
    refusals: Refusals | None = None,
    cc: str | None = None,
    task_status: trio.TaskStatus[QuicServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve QUIC on ``host:port`` until cancelled; ``task_status`` gets the server (its
    socket tells the bound port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = new_udp_socket(family, (host, port), gro=True)
    except OSError as exc:
        # Said with the address: "Permission denied" alone does not tell which one (a
        # port under 1024 needs CAP_NET_BIND_SERVICE).
        raise OSError(exc.errno, exc.strerror, f"UDP {host}:{port}") from None
    config = server_configuration(cert, key)
    try:
        async with trio.open_nursery() as nursery:
            server = QuicServer(sock, config, handler, nursery, limits=limits,
                                refusals=refusals, cc=cc)
            task_status.started(server)
            try:
                await server.serve()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    for driver in list(server.connections):
                        await driver.aclose("server shutting down")
                nursery.cancel_scope.cancel()
    finally:
        sock.close()
