"""`quicfs probe`'s pure parts: the target, the DER it reads, the Version Negotiation it
sends and reads, the NEGOTIATE answer as reported, the verdict and exit code, and the
text report's escaping (tests/integration/test_probe.py runs it against servers)."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from quicfs.errors import UsageError
from quicfs.options import parse_options
from quicfs.probe import parse_target, render_text
from quicfs.probe.der import distinguished_name, spnego_mechanisms
from quicfs.probe.model import (
    CertificateFacts,
    ProbeReport,
    SmbFacts,
    TLSFacts,
    TransportReport,
    VerificationFacts,
)
from quicfs.probe.run import judge
from quicfs.probe.smb import POSIX_CONTEXT, POSIX_GUID, facts
from quicfs.smb2.constants import Capabilities, SecurityMode, TransportCapabilityFlags
from quicfs.smb2.negotiate import (
    CompressionContext,
    EncryptionContext,
    NegotiateResponse,
    PreauthIntegrityContext,
    SigningContext,
    TransportCapabilitiesContext,
    UnknownContext,
)
from quicfs.transport.quic.engine import _opaque_list
from quicfs.transport.quic.inspect import (
    MIN_INITIAL,
    parse_version_negotiation,
    version_name,
    version_probe,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("files.example.com", ("files.example.com", None)),
    ("files.example.com:4433", ("files.example.com", 4433)),
    ("[2001:db8::1]:445", ("2001:db8::1", 445)),
    ("2001:db8::1", ("2001:db8::1", None)),
    ("//server:4455/share/dir", ("server", 4455)),
    ("smb://server/share", ("server", None)),
    ("\\\\server\\share", ("server", None)),
])
def test_targets(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "no server in '': expected HOST[:PORT]"),
    ("host:0", "bad port '0' in 'host:0'"),
    ("host:99999", "bad port '99999' in 'host:99999'"),
    ("a:b:c", "IPv6 address in 'a:b:c' must be in brackets: //[ADDR]:PORT/SHARE"),
    ("user@host", "'user@host' carries credentials; use -o username=... instead"),
])
def test_bad_targets(text, message):
    with pytest.raises(UsageError) as caught:
        parse_target(text)
    assert message in str(caught.value)


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    head = bytes([size]) if size < 0x80 else bytes([0x82]) + size.to_bytes(2, "big")
    return bytes([tag]) + head + body


SPNEGO = bytes.fromhex("2b0601050502")
MS_KRB5 = bytes.fromhex("2a864882f712010202")
KRB5 = bytes.fromhex("2a864886f712010202")
NTLM = bytes.fromhex("2b06010401823702020a")


def test_spnego_mechanisms():
    hints = tlv(0xA3, tlv(0x30, tlv(0xA0, tlv(0x1B, b"not_defined_in_RFC4178@please_ignore"))))
    mechs = tlv(0xA0, tlv(0x30, b"".join(tlv(0x06, m) for m in (MS_KRB5, KRB5, NTLM))))
    token = tlv(0x60, tlv(0x06, SPNEGO) + tlv(0xA0, tlv(0x30, mechs + hints)))
    assert spnego_mechanisms(token) == ["Kerberos (Microsoft)", "Kerberos", "NTLM"]
    assert spnego_mechanisms(b"") == []
    assert spnego_mechanisms(token[:-3]) == []  # cut short
    assert spnego_mechanisms(tlv(0x60, tlv(0x06, NTLM))) == []  # not SPNEGO


def test_distinguished_names():
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Exemple, SA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Files CA é")])
    assert distinguished_name(name.public_bytes()) == name.rfc4514_string()
    assert distinguished_name(b"\x30\x05\x31\x03\x30\x01\x06") == "(unreadable name, 7 bytes)"


def test_certificate_authorities_vector():
    a, b = b"\x30\x00", b"\x30\x03\x31\x01\x00"
    vector = len(a).to_bytes(2, "big") + a + len(b).to_bytes(2, "big") + b
    assert _opaque_list(len(vector).to_bytes(2, "big") + vector) == [a, b]
    # A length past the end: what is whole is kept.
    assert _opaque_list((len(vector) + 9).to_bytes(2, "big") + vector + b"\x00\x09") == [a, b]
    assert _opaque_list(b"") == []


def test_version_negotiation():
    dcid, scid = b"D" * 8, b"S" * 8
    probe = version_probe(dcid, scid)
    assert len(probe) == MIN_INITIAL and probe[0] & 0xC0 == 0xC0
    answer = b"\x80" + bytes(4) + b"\x08" + scid + b"\x08" + dcid + bytes.fromhex(
        "000000016b3343cfff00001d")
    assert parse_version_negotiation(answer, dcid, scid) == (1, 0x6B3343CF, 0xFF00001D)
    assert [version_name(v) for v in (1, 0x6B3343CF, 0xFF00001D, 0x1234)] == [
        "1", "2", "draft-29", "0x00001234"]
    # Not ours (the ids of another probe), not VN, cut short: ignored.
    assert parse_version_negotiation(answer, scid, dcid) is None
    assert parse_version_negotiation(b"\x80\x00\x00\x00\x01" + answer[5:], dcid, scid) is None
    assert parse_version_negotiation(answer[:-2], dcid, scid) is None
    assert parse_version_negotiation(answer[:12], dcid, scid) is None


def test_negotiate_answer_as_reported():
    resp = NegotiateResponse(
        security_mode=SecurityMode.SIGNING_ENABLED | SecurityMode.SIGNING_REQUIRED,
        dialect=0x0311, server_guid=uuid.UUID(int=7),
        capabilities=Capabilities.LEASING | Capabilities.LARGE_MTU | Capabilities.ENCRYPTION,
        max_transact_size=1 << 20, max_read_size=8 << 20, max_write_size=8 << 20,
        system_time=0, security_buffer=b"", contexts=(
            PreauthIntegrityContext((1,), b"s" * 32), EncryptionContext((4,)),
            SigningContext((1,)), CompressionContext((5, 3), chained=True),
            TransportCapabilitiesContext(
                TransportCapabilityFlags.ACCEPT_TRANSPORT_LEVEL_SECURITY),
            UnknownContext(POSIX_CONTEXT, POSIX_GUID)))
    over_quic = facts(resp, quic=True, took=0.0123)
    assert (over_quic.dialect, over_quic.cipher, over_quic.signing) == (
        "3.1.1", "AES-256-GCM", "AES-CMAC")
    assert over_quic.compression == ["LZ4", "LZ77+Huffman", "chained"]
    assert over_quic.capabilities == ["LEASING", "LARGE_MTU", "ENCRYPTION"]
    assert (over_quic.transport_security, over_quic.posix_extensions,
            over_quic.signing_required, over_quic.negotiate_ms) == (True, True, True, 12.3)
    assert over_quic.clock_skew is None and over_quic.authentication == []
    assert facts(resp, quic=False, took=0).transport_security is None


def _cert(fingerprint: str = "sha256:" + "11" * 32, subject: str = "CN=gw") -> CertificateFacts:
    return CertificateFacts(subject=subject, names=["gw"], issuer=subject, self_signed=True,
                            not_before="2025-01-01T00:00:00Z", not_after="2035-01-01T00:00:00Z",
                            days_left=3000, fingerprint=fingerprint, key="EC P-256",
                            signature="ecdsa-with-sha256")


def _smb(dialect: str = "3.1.1") -> SmbFacts:
    return SmbFacts(dialect=dialect, server_guid=str(uuid.UUID(int=1)), signing_required=False,
                    capabilities=[], max_read_size=1 << 20, max_write_size=1 << 20,
                    max_transact_size=1 << 20, cipher="AES-128-GCM", signing="AES-GMAC",
                    compression=[], transport_security=None, posix_extensions=False,
                    authentication=["NTLM"], clock_skew=0.0, negotiate_ms=1.0)


def _report(quic_ok: bool, tcp_ok: bool, *, problem: str | None = None, ok: bool = False,
            trusted: bool = False, subject: str = "CN=gw", dialect: str = "3.1.1"
            ) -> ProbeReport:
    check = VerificationFacts(against="the system CAs", name="gw", ok=ok, problem=problem,
                              issuer_trusted=trusted)
    tls = TLSFacts(version="TLS 1.3", cipher="TLS_AES_128_GCM_SHA256", alpn="smb",
                   chain=[_cert(subject=subject)], verification=check,
                   client_certificate_requested=False, client_certificate_authorities=[],
                   client_certificate_sent=None, session_tickets=False, ticket_lifetime=None,
                   resumption=None)
    quic = TransportReport("quic", "gw:443")
    tcp = TransportReport("tcp", "gw:445")
    if quic_ok:
        quic.connected, quic.tls, quic.smb = True, tls, _smb(dialect)
    else:
        quic.problem, quic.failure = "no QUIC answer from gw:443 within 5 s", "no-answer"
    if tcp_ok:
        tcp.connected, tcp.smb = True, _smb(dialect)
    else:
        tcp.problem, tcp.failure = "connection refused by gw:445", "refused"
    return ProbeReport("gw", quic, tcp)


@pytest.mark.parametrize(("quic", "tcp", "code", "verdict"), [
    (True, True, 0, "QUIC ready: mount with -o transport=quic,fingerprint=sha256:"
     + "11" * 32 + "; TCP ready too (-o transport=tcp)"),
    (True, False, 4, "QUIC ready: mount with -o transport=quic,fingerprint=sha256:"
     + "11" * 32 + "; TCP not: connection refused by gw:445"),
    (False, True, 3, "TCP ready: mount with -o transport=tcp; QUIC not: no QUIC answer from "
     "gw:443 within 5 s"),
    (False, False, 1, "not ready: QUIC: no QUIC answer from gw:443 within 5 s; TCP: "
     "connection refused by gw:445"),
])
def test_verdict_and_exit_code(quic, tcp, code, verdict):
    report = _report(quic, tcp, problem="is not signed by a trusted CA (x)")
    judge(report, parse_options(""), 443, 445)
    assert (report.exit_code, report.verdict) == (code, verdict)


def test_a_verified_server_needs_no_pin():
    report = _report(True, True, ok=True, trusted=True)
    judge(report, parse_options(""), 443, 445)
    assert report.quic_options == "transport=quic" and report.exit_code == 0


@pytest.mark.parametrize(("problem", "trusted", "why"), [
    ("has expired (not valid after 2020-01-01 00:00 UTC)", False,
     "certificate of gw:443 has expired (not valid after 2020-01-01 00:00 UTC)"),
    ("is not valid for that name (it is for other)", True,
     "certificate of gw:443 is not valid for that name (it is for other)"),
])
def test_certificate_problems_that_a_pin_does_not_cure(problem, trusted, why):
    report = _report(True, False, problem=problem, trusted=trusted)
    judge(report, parse_options(""), 443, 445)
    assert (report.quic.ready, report.quic.failure, report.quic.problem) == (
        False, "certificate", why)
    assert report.exit_code == 1


def test_an_old_dialect_is_not_ready():
    report = _report(False, True, dialect="3.0.2")
    report.quic = TransportReport("quic", "gw:443", probed=False)
    judge(report, parse_options("transport=tcp"), 443, 445)
    assert report.tcp.problem == "gw:445 offers SMB 3.0.2 at best; quicfs speaks 3.1.1 only"
    assert (report.tcp.failure, report.exit_code) == ("smb", 1)


def test_one_transport_probed_exits_0_or_1():
    report = _report(False, True)
    report.quic = TransportReport("quic", "gw:443", probed=False)
    judge(report, parse_options("transport=tcp"), 443, 445)
    assert (report.exit_code, report.verdict) == (0, "TCP ready: mount with -o transport=tcp")


def test_what_a_server_says_cannot_drive_the_terminal():
    report = _report(True, True, subject="CN=evil\x1b[2J\nverdict: fake")
    judge(report, parse_options(""), 443, 445)
    text = render_text(report)
    assert "\x1b" not in text
    assert "  certificate          CN=evil\\x1b[2J\\nverdict: fake" in text.splitlines()
    assert [line for line in text.splitlines() if line.startswith("verdict:")] == [
        "verdict: " + report.verdict]
