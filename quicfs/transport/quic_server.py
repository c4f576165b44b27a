"""A QUIC server on the same trio + qh3 stack: one UDP socket, many connections.

The dispatcher reads datagrams and routes each by its destination connection id to a
:class:`~quicfs.transport.quic.QuicDriver`, feeding its engine in the dispatcher's own
task once the socket is drained (the driver's worker handles the timers); an
Initial packet with an unknown id starts a new connection (RFC 9000 7, 17.2.2). Routing
is by connection id, never by address, so a client that changes address (migration, NAT
rebinding) stays on its connection; its driver follows it there (peer_path.py). Each
stream a client opens is handed to ``handler``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio
from qh3._hazmat import pull_quic_header
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.packet import QuicPacketType, encode_quic_version_negotiation

from quicfs.transport.quic import (
    ACTIVE_CID_LIMIT,
    ALPN,
    IDLE_TIMEOUT,
    QuicDriver,
    QuicStream,
    new_udp_socket,
    send_batch,
)

log = logging.getLogger("quicfs.quic.server")
#: The largest datagram the server sends (RFC 9000 14): 1500-byte Ethernet less IPv6 and
#: UDP headers. (peer_path.MIN_WINDOW is two of these.)
MAX_DATAGRAM = 1452

Handler = Callable[[QuicStream, str], Awaitable[None]]


def server_configuration(cert: str, key: str) -> QuicConfiguration:
    config = QuicConfiguration(alpn_protocols=[ALPN], is_client=False,
                               idle_timeout=IDLE_TIMEOUT, max_datagram_size=MAX_DATAGRAM,
                               active_connection_id_limit=ACTIVE_CID_LIMIT)
    config.load_cert_chain(cert, key)
    return config


def _label(addr: object) -> str:
    host, port = addr[0], addr[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class QuicServer:
    def __init__(self, sock: socket.socket, config: QuicConfiguration, handler: Handler,
                 nursery: trio.Nursery) -> None:
        self.sock = sock
        self.config = config
        self.handler = handler
        self.nursery = nursery
        self.routes: dict[bytes, QuicDriver] = {}
        self.connections: set[QuicDriver] = set()
        self._tickets: dict[bytes, object] = {}

    def _send(self, datagrams: list[tuple[bytes, object]]) -> None:
        send_batch(self.sock, datagrams, gso=True)

    async def serve(self) -> None:
        fed: dict[QuicDriver, None] = {}  # in order of arrival
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            for _ in range(256):
                try:
                    data, addr = self.sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                driver = self._dispatch(data, addr)
                if driver is not None:
                    fed[driver] = None
            # Each connection takes in all it got in one engine turn, here (quic.py).
            for driver in fed:
                if not driver.terminated.is_set():
                    driver.take_input()
            fed.clear()

    def _dispatch(self, data: bytes, addr: object) -> QuicDriver | None:
        try:
            version, ptype, _, dcid, scid, *_ = pull_quic_header(
                data, 0, self.config.connection_id_length
            )
        except ValueError:
            return None
        if version is not None and version not in self.config.supported_versions:
            self._send([(encode_quic_version_negotiation(
                source_cid=dcid, destination_cid=scid,
                supported_versions=self.config.supported_versions), addr)])
            return None
        driver = self.routes.get(dcid)
        if driver is None:
            if ptype != QuicPacketType.INITIAL or len(data) < 1200:
                return None
            driver = self._accept(dcid, addr)
        driver.deliver(data, addr)
        return driver

    def _accept(self, dcid: bytes, addr: object) -> QuicDriver:
        quic = QuicConnection(
            configuration=self.config,
            original_destination_connection_id=dcid,
            session_ticket_fetcher=lambda label: self._tickets.pop(label, None),  # type: ignore[arg-type,misc]
            session_ticket_handler=lambda t: self._tickets.__setitem__(t.ticket, t),
        )
        driver = QuicDriver(quic, sock=None, peer=addr, label=_label(addr))  # type: ignore[arg-type]
        driver.send_datagrams = self._send  # type: ignore[assignment]
        self.routes[dcid] = driver
        self.routes[quic.host_cid] = driver
        self.connections.add(driver)
        peer = _label(addr)

        def on_event(event: events.QuicEvent) -> None:
            if isinstance(event, events.ConnectionIdIssued):
                self.routes[event.connection_id] = driver
            elif isinstance(event, events.ConnectionIdRetired):
                if self.routes.get(event.connection_id) is driver:
                    del self.routes[event.connection_id]

        def on_stream(stream: QuicStream) -> None:
            self.nursery.start_soon(self._run_handler, stream, peer)

        driver.on_event = on_event
        driver.accept_handler = on_stream
        self.nursery.start_soon(self._run_driver, driver)
        return driver

    async def _run_driver(self, driver: QuicDriver) -> None:
        try:
            await driver.run()
        finally:
            self.connections.discard(driver)
            for cid in [c for c, d in self.routes.items() if d is driver]:
                del self.routes[cid]

    async def _run_handler(self, stream: QuicStream, peer: str) -> None:
        try:
            await self.handler(stream, peer)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def serve_quic(
    host: str,
    port: int,
    *,
    cert: str,
    key: str,
    handler: Handler,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve QUIC on ``host:port`` until cancelled; ``task_status`` gets the bound port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # No GRO on the shared socket: each datagram is routed on its own.
    sock = new_udp_socket(family, (host, port), gro=False)
    config = server_configuration(cert, key)
    try:
        async with trio.open_nursery() as nursery:
            server = QuicServer(sock, config, handler, nursery)
            task_status.started(sock.getsockname()[1])
            try:
                await server.serve()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    for driver in list(server.connections):
                        await driver.aclose("server shutting down")
                nursery.cancel_scope.cancel()
    finally:
        sock.close()
