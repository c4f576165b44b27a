"""The edges of the aioquic engine (engine_aioquic.py), where qh3's objects become
aioquic's and back: the configuration, session tickets (RFC 8446 4.6.1), the server's
signing key, and qh3's certificate pin. The rest of quicfs speaks qh3 only.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from typing import Any

import qh3.tls
from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration as AioquicConfiguration
from aioquic.quic.logger import QuicFileLogger
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PSS
from cryptography.hazmat.primitives.serialization import Encoding
from qh3.quic.configuration import QuicConfiguration

_DER = Encoding.DER


def check_pin(pin: str, cert: x509.Certificate | None) -> None:
    """qh3's pin check (sha256 of the DER certificate, hex, colons allowed), with its
    words: quic/tls.py's describe_failure knows a pin failure by "fingerprint"."""
    expected = pin.replace(":", "").lower()
    got = hashlib.sha256(cert.public_bytes(_DER)).hexdigest() if cert is not None else ""
    if got != expected:
        raise tls.AlertBadCertificate(
            f'Fingerprints did not match. Expected "{expected}", got "{got}"')


def aioquic_configuration(config: QuicConfiguration, cc: str) -> AioquicConfiguration:
    """qh3's configuration as aioquic's, with congestion controller ``cc``."""
    out = AioquicConfiguration(
        alpn_protocols=config.alpn_protocols,
        is_client=config.is_client,
        server_name=config.server_name,
        idle_timeout=config.idle_timeout,
        max_datagram_size=config.max_datagram_size,
        connection_id_length=config.connection_id_length,
        max_data=config.max_data,
        max_stream_data=config.max_stream_data,
        initial_rtt=config.initial_rtt,
        verify_mode=config.verify_mode,
        cafile=config.cafile,
        capath=config.capath,
        cadata=config.cadata,
        secrets_log_file=config.secrets_log_file,
        supported_versions=list(config.supported_versions),
        congestion_control_algorithm=cc,
    )
    if config.cipher_suites:
        out.cipher_suites = [tls.CipherSuite(int(s)) for s in config.cipher_suites]
    path = getattr(config.quic_logger, "path", None)
    if path is not None:
        out.quic_logger = QuicFileLogger(path)
    if config.certificate is not None:
        out.certificate = _x509(config.certificate)
        out.certificate_chain = [_x509(c) for c in config.certificate_chain]
        out.private_key = _signing_key(config.private_key)
    if config.is_client and config.session_ticket is not None:
        # No 0-RTT (module docstring).
        out.session_ticket = dataclasses.replace(
            to_aioquic_ticket(config.session_ticket), max_early_data_size=None)
    return out


def _x509(cert: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(bytes(cert.public_bytes()))


def to_aioquic_ticket(ticket: qh3.tls.SessionTicket) -> tls.SessionTicket:
    return tls.SessionTicket(**_ticket_fields(ticket, aware=True),
                             cipher_suite=tls.CipherSuite(int(ticket.cipher_suite)))


def to_qh3_ticket(ticket: tls.SessionTicket) -> qh3.tls.SessionTicket:
    return qh3.tls.SessionTicket(**_ticket_fields(ticket, aware=False),
                                 cipher_suite=qh3.tls.CipherSuite(int(ticket.cipher_suite)))


def _ticket_fields(ticket: Any, *, aware: bool) -> dict[str, Any]:
    """The fields the two SessionTicket classes share (RFC 8446 4.6.1), all but the
    cipher suite. Their times are UTC: aioquic's carry the zone, qh3's do not."""
    fields = {f.name: getattr(ticket, f.name) for f in dataclasses.fields(ticket)
              if f.name != "cipher_suite"}
    for name in ("not_valid_before", "not_valid_after"):
        when = fields[name]
        if when.tzinfo is not None:
            when = when.astimezone(datetime.UTC)
        fields[name] = when.replace(tzinfo=datetime.UTC if aware else None)
    return fields


# qh3's private keys sign but do not export, and aioquic only calls sign() on its key and
# tells the kind by isinstance: these lend qh3's key to aioquic. Registered as virtual
# subclasses of cryptography's key classes, which changes nothing for other keys.
class _Qh3Key:
    def __init__(self, key: Any) -> None:
        self._key = key


class _Qh3RsaKey(_Qh3Key):
    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        return bytes(self._key.sign(data, isinstance(padding, PSS), algorithm.digest_size * 8))


class _Qh3EcKey(_Qh3Key):
    @property
    def curve(self) -> ec.EllipticCurve:
        return {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}[
            self._key.curve_type]()

    def sign(self, data: bytes, algorithm: Any) -> bytes:
        return bytes(self._key.sign(data))  # qh3 hashes as the curve's TLS 1.3 scheme


class _Qh3Ed25519Key(_Qh3Key):
    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data))


rsa.RSAPrivateKey.register(_Qh3RsaKey)
ec.EllipticCurvePrivateKey.register(_Qh3EcKey)
ed25519.Ed25519PrivateKey.register(_Qh3Ed25519Key)


def _signing_key(key: Any) -> Any:
    from qh3._hazmat import EcPrivateKey, Ed25519PrivateKey, RsaPrivateKey

    for qh3_kind, ours in ((RsaPrivateKey, _Qh3RsaKey), (EcPrivateKey, _Qh3EcKey),
                           (Ed25519PrivateKey, _Qh3Ed25519Key)):
        if isinstance(key, qh3_kind):
            return ours(key)
    raise ValueError(f"aioquic cannot sign with a {type(key).__name__}")


__all__ = ["aioquic_configuration", "check_pin", "to_aioquic_ticket", "to_qh3_ticket"]
