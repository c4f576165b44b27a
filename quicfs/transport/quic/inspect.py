"""What a QUIC server shows of itself before anyone logs in, for ``quicfs probe``
(quicfs/probe/): the QUIC versions it speaks (a Version Negotiation it is asked for,
RFC 9000 6), the handshake (cipher, ALPN, its certificates, whether it asks for ours and
names which CAs, session tickets and whether it resumes one), and whether its certificate
passes the checks a mount makes.

The handshake here checks no certificate (so a probe sees one that would fail); the
chain is checked afterwards by :func:`verify_chain`, with the function qh3's handshake
calls, on the same CA store and name: the verdict is the one a mount would reach. The
engine is always qh3's (``cc=cubic``): one handshake and one request need no congestion
control, and :meth:`Engine.handshake_facts` reads qh3's handshake.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import trio

from quicfs.errors import ConnectError
from quicfs.transport.quic.client import handshake, offerable, peer_label, start_engine
from quicfs.transport.quic.client_driver import ClientDriver
from quicfs.transport.quic.configuration import ALPN, client_configuration
from quicfs.transport.quic.engine import HandshakeFacts, verify_server_chain
from quicfs.transport.quic.stream import QuicTransport
from quicfs.transport.quic.tls import QuicTLSOptions, certificate_problem, describe_failure

#: A version reserved to make a server answer with Version Negotiation (RFC 9000 15:
#: 0x?a?a?a?a is never a real one).
UNKNOWN_VERSION = 0x1A2A3A4A
#: A server answers an unknown version only in a datagram this large (RFC 9000 14.1).
MIN_INITIAL = 1200
#: The engine a probe uses (module docstring).
PROBE_CC = "cubic"


def version_name(version: int) -> str:
    """A QUIC version as people write it: 1, 2 (RFC 9369), draft-29, or its hex."""
    if version in (1, 0x6B3343CF):
        return "1" if version == 1 else "2"
    if version & 0xFFFFFF00 == 0xFF000000:
        return f"draft-{version & 0xFF}"
    return f"{version:#010x}"


def ticket_lifetime(ticket: object) -> int | None:
    """Seconds a session ticket is valid for, as the server said (RFC 8446 4.6.1)."""
    try:
        return int((ticket.not_valid_after - ticket.not_valid_before)  # type: ignore[attr-defined]
                   .total_seconds())
    except (AttributeError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class VersionAnswer:
    """What a Version Negotiation probe learnt: the server's versions, or that the port is
    closed (ICMP port unreachable), or nothing (``answered`` False)."""

    answered: bool = False
    refused: bool = False
    versions: tuple[int, ...] = ()


def version_probe(dcid: bytes, scid: bytes) -> bytes:
    """A long-header datagram of :data:`UNKNOWN_VERSION`, padded to :data:`MIN_INITIAL`."""
    head = (bytes([0xC0 | os.urandom(1)[0] & 0x3F]) + UNKNOWN_VERSION.to_bytes(4, "big")
            + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid)
    return head + bytes(MIN_INITIAL - len(head))


def parse_version_negotiation(data: bytes, dcid: bytes, scid: bytes) -> tuple[int, ...] | None:
    """The versions of a Version Negotiation packet answering ours (its connection ids
    are ours swapped, RFC 9000 17.2.1); None for anything else."""
    if len(data) < 7 or not data[0] & 0x80 or data[1:5] != bytes(4):
        return None
    at = 5
    ids = []
    for _ in range(2):
        size = data[at]
        ids.append(data[at + 1:at + 1 + size])
        at += 1 + size
        if at > len(data):
            return None
    if ids != [scid, dcid] or (len(data) - at) % 4:
        return None
    return tuple(int.from_bytes(data[i:i + 4], "big") for i in range(at, len(data), 4))


async def ask_versions(addr: object, family: int, within: float) -> VersionAnswer:
    """Ask the server at ``addr`` which QUIC versions it speaks (a datagram of a version
    nobody speaks, sent again after 0.2, 0.4, 0.8 s... until ``within``). The socket is
    connected, so an ICMP port
    unreachable comes back as ECONNREFUSED: the port is closed."""
    dcid, scid = os.urandom(8), os.urandom(8)
    packet = version_probe(dcid, scid)
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock, \
            trio.move_on_after(within):
        try:
            await sock.connect(addr)
            wait = 0.2
            while True:
                await sock.send(packet)
                with trio.move_on_after(wait):
                    while True:
                        versions = parse_version_negotiation(await sock.recv(65536), dcid,
                                                             scid)
                        if versions is not None:
                            return VersionAnswer(answered=True, versions=versions)
                wait *= 2
        except ConnectionRefusedError:
            return VersionAnswer(refused=True)
        except OSError:
            pass  # unreachable and the like: the handshake tells it
    return VersionAnswer()


@dataclass(frozen=True, slots=True)
class Verification:
    """A certificate chain checked as a mount checks it without a pin: against ``store``
    (``cafile=PATH`` or the system CAs) and ``name``; ``problem`` None if it passes,
    else why (``is not valid for that name (it is for ...)``, ``has expired (...)``,
    ``is not signed by a trusted CA (...)``); ``trusted``: all but the name passes (the
    issuer is in the store, the dates hold)."""

    store: str
    name: str
    problem: str | None
    trusted: bool


def verify_chain(chain: Sequence[bytes], name: str, cafile: str | None = None
                 ) -> Verification:
    """Check ``chain`` (DER, the server's own first) as the handshake does under
    ``CERT_REQUIRED`` (configuration.py, qh3's verify_certificate)."""
    from cryptography import x509

    config = client_configuration(name, QuicTLSOptions(cafile=cafile))
    store = f"cafile={cafile}" if cafile else "the system CAs"
    leaf = x509.load_der_x509_certificate(bytes(chain[0]))

    def check(with_name: bool) -> str | None:
        return verify_server_chain([bytes(c) for c in chain], name, cafile=config.cafile,
                                   capath=config.capath, check_name=with_name)

    reason = check(True)
    if reason is None:
        return Verification(store, name, None, True)
    without_name = check(False)
    trusted = without_name is None
    problem = certificate_problem(leaf, name)  # the dates, then the name
    if problem is None:
        problem = (f"is not valid for that name ({reason})" if trusted
                   else f"is not signed by a trusted CA ({without_name})")
    elif problem.startswith("is not valid for that name") and not trusted:
        problem = f"is not signed by a trusted CA ({without_name}), and {problem}"
    return Verification(store, name, problem, trusted)


@dataclass(slots=True)
class QuicInspection:
    """One look at a QUIC server. ``transport`` is open (the SMB stream) when the
    handshake was done and ALPN smb agreed; its closing is the caller's."""

    peer: str
    error: ConnectError | None = None
    versions: VersionAnswer = field(default_factory=VersionAnswer)
    facts: HandshakeFacts | None = None
    alpn: str | None = None
    #: Seconds from the first datagram to the confirmed handshake.
    connect_time: float | None = None
    transport: QuicTransport | None = None
    #: Session tickets the server sent so far (RFC 8446 4.6.1).
    tickets: list[object] = field(default_factory=list)


class QuicInspector:
    """Looks at the QUIC server at ``host:port`` (:meth:`inspect`), then opens more
    connections to it (:meth:`open`) and tries a ticket it gave (:meth:`resume`). ``tls``:
    the user's options: its client certificate is presented, and a failed handshake is
    told in its terms (tls.describe_failure); its CA and pin are for the caller's
    verdict (:func:`verify_chain`), not the handshake."""

    def __init__(self, host: str, port: int, *, tls: QuicTLSOptions, within: float,
                 server_name: str | None = None, qlog_dir: str | None = None) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self.within = within
        self.name = server_name or host
        self.label = peer_label(host, port)
        self.config = client_configuration(self.name, QuicTLSOptions(cert=tls.cert,
                                                                     key=tls.key),
                                           qlog_dir=qlog_dir)
        # Seen whatever it is; checked by verify_chain.
        self.config.verify_mode = ssl.CERT_NONE
        self._addr: object = None
        self._family = socket.AF_INET

    async def _resolve(self) -> None:
        if self._addr is not None:
            return
        try:
            infos = await trio.socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ConnectError(f"cannot resolve host of {self.label}: "
                               f"{exc.strerror or exc}") from None
        self._family, _, _, _, self._addr = infos[0]

    async def _driver(self, nursery: trio.Nursery, ticket: object = None,
                      on_ticket: Callable[[object], None] | None = None) -> ClientDriver:
        config = self.config
        if ticket is not None:
            config = replace(config, session_ticket=ticket)
        kwargs = {"session_ticket_handler": on_ticket} if on_ticket is not None else {}
        quic = start_engine(config, self._addr, trio.current_time(), PROBE_CC, **kwargs)
        return await handshake(quic, self._addr, self._family, self.label, self.within,
                                nursery)

    async def inspect(self, nursery: trio.Nursery) -> QuicInspection:
        """Handshake (the driver's worker in ``nursery``) and, at once, ask for the
        server's versions; a port found closed ends the wait at once."""
        result = QuicInspection(self.label)
        try:
            await self._resolve()
        except ConnectError as exc:
            result.error = exc
            return result
        drivers: list[ClientDriver] = []
        started = trio.current_time()
        versions_done = trio.Event()

        async with trio.open_nursery() as local:

            async def versions() -> None:
                result.versions = await ask_versions(self._addr, self._family, self.within)
                versions_done.set()
                if result.versions.refused:
                    local.cancel_scope.cancel()

            local.start_soon(versions)
            drivers.append(await self._driver(nursery, on_ticket=result.tickets.append))
            if drivers[0].confirmed.is_set():
                result.connect_time = trio.current_time() - started
            # The server answers a Version Negotiation within a round trip, mostly
            # before the handshake is done: wait a little for it, no more.
            rtt = drivers[0].quic.figure("smoothed_rtt") or 0.1
            with trio.move_on_after(max(0.2, 3 * rtt)):
                await versions_done.wait()
            local.cancel_scope.cancel()
        if not drivers:  # the port is closed: the handshake was abandoned
            result.error = ConnectError(f"connection refused by {self.label}: nothing "
                                        f"listens on UDP port {self.port} (ICMP port "
                                        "unreachable)")
            return result
        driver = drivers[0]
        result.facts = driver.quic.handshake_facts()
        result.alpn = driver.alpn
        if not driver.confirmed.is_set():
            result.connect_time = None
            result.error = describe_failure(driver, self.label, self.within, self.name,
                                            self.tls)
            return result
        if driver.alpn != ALPN:
            await driver.aclose("no SMB", linger=0)
            result.error = ConnectError(f"{self.label} refused ALPN 'smb': it does not "
                                        "serve SMB over QUIC")
            return result
        result.transport = QuicTransport(driver, driver.open_stream(), self.label,
                                         verified=False)
        return result

    async def open(self, nursery: trio.Nursery) -> QuicTransport:
        """One more connection to the server, for one more SMB request."""
        await self._resolve()
        driver = await self._driver(nursery)
        if not driver.confirmed.is_set():
            raise describe_failure(driver, self.label, self.within, self.name, self.tls)
        if driver.alpn != ALPN:
            await driver.aclose("no SMB", linger=0)
            raise ConnectError(f"{self.label} refused ALPN 'smb'")
        return QuicTransport(driver, driver.open_stream(), self.label, verified=False)

    async def resume(self, ticket: object, nursery: trio.Nursery) -> bool | None:
        """Whether a handshake offering ``ticket`` resumes (RFC 8446 2.2); None if the
        ticket cannot be offered or the handshake did not finish."""
        await self._resolve()
        if not offerable(self.config, ticket, self._addr, PROBE_CC):
            return None
        driver = await self._driver(nursery, ticket=ticket)
        done = driver.confirmed.is_set()
        resumed = driver.session_resumed
        await driver.aclose("probe done", linger=0)
        return resumed if done else None


__all__ = ["QuicInspection", "QuicInspector", "Verification", "VersionAnswer",
           "ask_versions", "parse_version_negotiation", "ticket_lifetime", "verify_chain",
           "version_name", "version_probe"]
