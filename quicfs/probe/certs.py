"""A server's certificates as the probe reports them (``cryptography`` reads them)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from quicfs.cert import fingerprint
from quicfs.probe.model import CertificateFacts

#: Signature algorithms by OID, named as cryptography names them (ecdsa-with-sha256).
_SIGNATURES = {getattr(SignatureAlgorithmOID, name): name.lower().replace("_", "-")
               for name in dir(SignatureAlgorithmOID) if name.isupper()}


def _key(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except ValueError:
        return "unknown"
    if isinstance(key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {names.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return f"{'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'} {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [*san.get_values_for_type(x509.DNSName),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress))]


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_facts(der: bytes, now: datetime.datetime | None = None) -> CertificateFacts:
    """What the report says of one certificate (DER)."""
    cert = x509.load_der_x509_certificate(der)
    now = now or datetime.datetime.now(datetime.UTC)
    oid = cert.signature_algorithm_oid
    signature = _SIGNATURES.get(oid, oid.dotted_string)
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        names=_names(cert),
        issuer=cert.issuer.rfc4514_string(),
        self_signed=cert.issuer == cert.subject,
        not_before=_when(cert.not_valid_before_utc),
        not_after=_when(cert.not_valid_after_utc),
        days_left=(cert.not_valid_after_utc - now).days,
        fingerprint=fingerprint(der),
        key=_key(cert),
        signature=signature,
    )
