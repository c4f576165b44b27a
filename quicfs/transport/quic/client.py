"""The client's connect: :func:`open_quic` resolves the server, handshakes (TLS 1.3,
ALPN smb; RFC 9001), resuming with a stored session ticket where it can, and opens the
stream that carries SMB (MS-SMB2 2.1). Like aioquic's ``connect``.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import replace

import trio
from qh3.quic.configuration import QuicConfiguration

from quicfs.errors import CertificateError, ConnectError
from quicfs.transport.quic.client_driver import ClientDriver
from quicfs.transport.quic.configuration import ALPN, client_configuration
from quicfs.transport.quic.engine import Engine, new_engine
from quicfs.transport.quic.stream import QuicTransport
from quicfs.transport.quic.tickets import TicketStore
from quicfs.transport.quic.tls import QuicTLSOptions, describe_failure
from quicfs.transport.quic.udp import new_udp_socket

log = logging.getLogger("quicfs.quic")

DEFAULT_PORT = 443


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


def peer_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _transport_error(driver: ClientDriver) -> bool:
    """The connection ended with a transport error (RFC 9000 20.1), ours or the peer's,
    not a TLS alert (0x100 + alert: certificates, ALPN, versions), which would end the
    next handshake the same way. Loss causes some: qh3's server refuses a first
    Initial that carries no CRYPTO frame (PROTOCOL_VIOLATION), which it gets when the
    ClientHello's datagrams and the first of their copies are lost."""
    code = driver.close_error_code
    return (code is not None and 0 < code < 0x100) or \
        (driver.close_reason or "").startswith("QUIC engine error")


async def handshake(quic: Engine, addr: object, family: int, label: str, within: float,
                     nursery: trio.Nursery) -> ClientDriver:
    """Drive ``quic``'s handshake, the worker in ``nursery``. The driver comes back with
    ``confirmed`` set, or closed (failed, or not confirmed within ``within``)."""
    driver = ClientDriver(quic, sock=new_udp_socket(family), peer=addr,  # type: ignore[arg-type]
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
    label = peer_label(host, port)
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
    driver = await handshake(quic, addr, family, label, within, nursery)
    if not driver.confirmed.is_set() and driver.quic.authenticated \
            and (ticket is not None or _transport_error(driver)):
        failure = describe_failure(driver, label, within, name, tls)
        if not isinstance(failure, CertificateError):
            # The server answered, so it is there: a full handshake may still succeed
            # where a resumed one failed for whatever reason, or a full one for a
            # transport error.
            log.info("%s: %s failed (%s): a full handshake instead", label,
                     "resumed handshake" if ticket is not None else "handshake", failure)
            driver = await handshake(without_ticket(), addr, family, label, within, nursery)
    if not driver.confirmed.is_set():
        raise describe_failure(driver, label, within, name, tls)
    if driver.alpn != ALPN:
        await driver.aclose("no SMB", linger=0)
        raise ConnectError(f"{label} refused ALPN 'smb': it does not serve SMB over QUIC")
    stream = driver.open_stream()
    log.debug("QUIC to %s ready (resumed=%s)", label, driver.session_resumed)
    return QuicTransport(driver, stream, label, verified=not tls.insecure)
