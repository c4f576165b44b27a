"""What the QUIC server admits: its limits (`quicfs gateway`'s flags), whom a
per-address limit counts, and what a client's first datagram buys before its address is
validated (RFC 9000 8.1: three times what it sent). Pure: the server asks, these answer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from qh3._hazmat import pull_quic_header
from qh3.quic.configuration import QuicConfiguration

from quicfs.transport.quic.configuration import MAX_DATAGRAM


@dataclass(frozen=True)
class Limits:
    """What the server admits; `quicfs gateway`'s flags. Each bound keeps what one
    source, or all of them, can make the server hold."""

    #: Stateless Retry (RFC 9000 8.1.2): "always", "never", or "auto": once
    #: ``retry_threshold`` handshakes are in progress.
    retry: str = "auto"
    retry_threshold: int = 16
    max_connections: int = 1024
    #: Connections from one IP address, handshakes included.
    max_per_address: int = 64
    #: Handshakes in progress (half-open connections).
    max_handshakes: int = 256
    handshake_timeout: float = 10.0
    #: A connection must open its stream this soon after its handshake.
    stream_timeout: float = 10.0
    #: Seconds a connection whose stream is done waits for the client to close it.
    linger: float = 10.0
    #: Version Negotiation packets sent per second at most (RFC 9000 5.2.2 lets a
    #: server limit them; each answers a datagram it cannot authenticate).
    vn_per_second: float = 100.0


def address_key(addr: object) -> str:
    """Whom --max-per-address counts: an IPv4 address, or an IPv6 /64 (one host or one
    site holds a whole /64, RFC 4291 2.5.4; per address, it would have no bound)."""
    host = addr[0]  # type: ignore[index]
    if ":" not in host:
        return host  # IPv4, as the socket gives it: the common case, kept cheap
    ip = ipaddress.ip_address(host.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def first_flight_size(config: QuicConfiguration) -> int:
    """What the server sends before the client's address is validated, at most: an
    Initial padded to a full datagram (ServerHello), and Handshake packets carrying
    EncryptedExtensions, the certificate chain, CertificateVerify and Finished."""
    chain = [config.certificate, *config.certificate_chain]
    der = sum(len(cert.public_bytes()) for cert in chain if cert is not None)
    return MAX_DATAGRAM + der + 512


def packets_length(data: bytes, cid_length: int) -> int:
    """The bytes of the long-header packets ``data`` begins with: what qh3 counts of a
    datagram before the handshake (bytes after the last packet, padding, it does not)."""
    end = 0
    while end < len(data) and data[end] & 0x80:
        try:
            packet_end = pull_quic_header(data, end, cid_length)[9]
        except ValueError:
            break
        if packet_end <= end:
            break
        end = packet_end
    return end
