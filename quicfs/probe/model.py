"""The report of ``quicfs probe``, as plain values: what the text report prints and
``--json`` gives (field by field in docs/probe.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

#: Exit codes (docs/probe.md): both transports ready, TCP only, QUIC only, neither. With
#: one transport probed (transport=quic or tcp): 0 if it is ready, else 1.
EXIT_BOTH, EXIT_NEITHER, EXIT_TCP_ONLY, EXIT_QUIC_ONLY = 0, 1, 3, 4


@dataclass(slots=True)
class CertificateFacts:
    """One certificate of the server's chain."""

    subject: str
    #: subjectAltName: DNS names and IP addresses.
    names: list[str]
    issuer: str
    self_signed: bool
    not_before: str  # ISO 8601, UTC
    not_after: str
    #: Whole days until not_after (negative once it has passed).
    days_left: int
    #: ``sha256:HEX``, as ``fingerprint=`` takes it.
    fingerprint: str
    key: str  # "EC P-256", "RSA 2048", "Ed25519"
    signature: str  # "ecdsa-with-SHA256", "sha256WithRSAEncryption"


@dataclass(slots=True)
class VerificationFacts:
    """The chain checked as a mount checks it."""

    #: ``the system CAs`` or ``cafile=PATH``.
    against: str
    #: The name the certificate must be for (the host as dialled).
    name: str
    ok: bool
    #: Why not: "is not signed by a trusted CA (...)", "has expired (...)", "is not
    #: valid for that name (it is for ...)"; None if ok.
    problem: str | None
    #: The issuer is in the store and the dates hold: only the name may fail.
    issuer_trusted: bool
    #: With ``fingerprint=``: whether the server's certificate is the one pinned.
    pin_matches: bool | None = None


@dataclass(slots=True)
class TLSFacts:
    version: str
    cipher: str | None
    alpn: str | None
    #: The server's certificates, its own first.
    chain: list[CertificateFacts]
    verification: VerificationFacts | None
    #: The server sent a CertificateRequest; the CAs it named (RFC 4514), if any.
    client_certificate_requested: bool
    client_certificate_authorities: list[str]
    #: The client certificate presented (``cert=``), if any.
    client_certificate_sent: str | None
    #: The server sent a session ticket, valid for this many seconds.
    session_tickets: bool
    ticket_lifetime: int | None
    #: A second handshake offering the ticket was resumed; None if not tried.
    resumption: bool | None


@dataclass(slots=True)
class Accepts:
    """What the server accepts at all, one NEGOTIATE each (probe/smb.py)."""

    #: The transport the extra NEGOTIATEs went over.
    over: str
    dialects: list[str]
    ciphers: list[str]
    signing: list[str]
    #: What could not be settled (a connection that did not open).
    unknown: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SmbFacts:
    """The server's answer to one NEGOTIATE offering everything (probe/smb.py)."""

    dialect: str
    server_guid: str
    signing_required: bool
    capabilities: list[str]
    max_read_size: int
    max_write_size: int
    max_transact_size: int
    #: The cipher and signing algorithm quicfs would get (None: no encryption).
    cipher: str | None
    signing: str
    compression: list[str]
    #: Over QUIC: the server agreed to leave encryption to QUIC (MS-SMB2 2.2.3.1.5);
    #: None over TCP, where it is not asked.
    transport_security: bool | None
    posix_extensions: bool
    #: SPNEGO mechanisms the server offers (Kerberos, NTLM, ...).
    authentication: list[str]
    #: Seconds the server's clock is ahead of ours (negative: behind).
    clock_skew: float | None
    negotiate_ms: float
    accepts: Accepts | None = None


@dataclass(slots=True)
class TransportReport:
    transport: str  # "quic" or "tcp"
    peer: str
    #: False when transport= left it out.
    probed: bool = True
    #: The transport connected (TCP's handshake; QUIC's, confirmed, ALPN smb).
    connected: bool = False
    #: A mount would work over it (docs/probe.md: what "ready" asks).
    ready: bool = False
    #: Why it is not ready (the one-line error a mount would print, or the probe's).
    problem: str | None = None
    #: What kind of failure: resolve, no-answer, refused, unreachable, alpn, tls,
    #: client-certificate, certificate, smb, error; None when ready.
    failure: str | None = None
    connect_ms: float | None = None
    rtt_ms: float | None = None
    #: QUIC: the versions the server named in a Version Negotiation, None if it did not
    #: answer one.
    quic_versions: list[str] | None = None
    tls: TLSFacts | None = None
    smb: SmbFacts | None = None


@dataclass(slots=True)
class ProbeReport:
    host: str
    quic: TransportReport
    tcp: TransportReport
    #: One line: what to mount with, or why nothing works.
    verdict: str = ""
    exit_code: int = EXIT_NEITHER
    #: The options a QUIC mount needs (``transport=quic,fingerprint=sha256:...``), if
    #: QUIC is ready.
    quic_options: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)
