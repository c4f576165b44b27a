"""Self-signed certificates for the gateway and tests (`quicfs cert new`), and the SHA-256
fingerprint form that ``fingerprint=`` takes. Uses `cryptography`; nothing hand-rolled."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from quicfs.errors import UsageError

#: Certificate, key and CA files are read up to this size (a CA bundle is ~200 KiB).
PEM_MAX = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path
    fingerprint: str  # "sha256:HEX"


def fingerprint(cert_pem_or_der: bytes) -> str:
    """``sha256:`` and the hex SHA-256 of the certificate's DER encoding."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert_pem_or_der)
    else:
        cert = x509.load_der_x509_certificate(cert_pem_or_der)
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def check_files(*, cert: str | None = None, key: str | None = None,
                cafile: str | None = None, names: tuple[str, str, str] = ("cert=", "key=",
                                                                         "cafile=")) -> None:
    """Refuse, as a usage error naming the option, a certificate, key or CA file that the
    TLS stack could not use: missing, not PEM, a key under a passphrase, or a key that is
    not the certificate's. qh3 reads them only once a connection starts, and fails there
    with an IndexError or a panic in its Rust core. ``names``: how the command spells the
    three (the gateway says --cert, --key)."""
    if cafile is not None:
        _certificates(cafile, names[2])
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise UsageError(f"a certificate needs both {names[0].strip()} and "
                         f"{names[1].strip()}")
    leaf = _certificates(cert, names[0])[0]
    data = _read(key, names[1])
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UsageError(f"{names[1]}{key}: the key is protected by a passphrase, which "
                         "quicfs cannot ask for") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{names[1]}{key}: not a PEM private key") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise UsageError(f"{names[1]}{key} is not the key of the certificate in "
                         f"{names[0]}{cert}")


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(PEM_MAX + 1)[:PEM_MAX]
    except FileNotFoundError:
        raise UsageError(f"{option}{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{option}{path}: {exc.strerror}") from None


def _certificates(path: str, option: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path, option))
    except ValueError:
        raise UsageError(f"{option}{path}: not a PEM certificate") from None


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def make_self_signed(names: list[str], *, days: int = 365,
                     not_before: datetime.datetime | None = None,
                     issuer: tuple[bytes, bytes] | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``names`` (DNS names or IP addresses), an
    ECDSA P-256 key, valid for server authentication (TLS 1.3 as SMB over QUIC uses).
    With ``issuer`` (a CA's certificate and key PEM) it is signed by that CA instead."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer_name, signing_key = subject, key
    if issuer is not None:
        ca_cert = x509.load_pem_x509_certificate(issuer[0])
        ca_key = serialization.load_pem_private_key(issuer[1], password=None)
        issuer_name, signing_key = ca_cert.subject, ca_key  # type: ignore[assignment]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return _pem(cert, key)


def make_ca(name: str = "quicfs test CA", *, days: int = 365) -> tuple[bytes, bytes]:
    """A certificate authority (certificate PEM, key PEM), for ``cafile=`` setups."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert, key)


def write_self_signed(name: str, out_dir: str | os.PathLike[str], *,
                      extra_names: list[str] | None = None, days: int = 365) -> CertFiles:
    """Write NAME.crt (0644) and NAME.key (0600) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = make_self_signed([name, *(extra_names or [])], days=days)
    safe = name.replace("/", "_").replace(":", "_")
    cert_path, key_path = out / f"{safe}.crt", out / f"{safe}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert_pem)
    return CertFiles(cert_path, key_path, fingerprint(cert_pem))
