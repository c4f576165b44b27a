"""TLS on a QUIC connection (RFC 9001): how the client checks the server's certificate
(:class:`QuicTLSOptions`: a CA, a pinned fingerprint, or nothing, and the client's own
certificate), and, when a handshake fails, what to tell the user about it
(:func:`describe_failure`). Synchronous: the diagnosis reads what the driver and its
engine kept of the handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quicfs.errors import CertificateError, ConnectError, UsageError

if TYPE_CHECKING:
    from quicfs.transport.quic.driver import QuicDriver


@dataclass(frozen=True, slots=True)
class QuicTLSOptions:
    """How the server's certificate is checked, and the client's own certificate."""

    cafile: str | None = None
    fingerprint: str | None = None  # sha256 of the DER certificate, "sha256:HEX"
    insecure: bool = False
    cert: str | None = None
    key: str | None = None

    def policy_id(self) -> str:
        """Names how the server was verified. A session ticket is reused only under the
        same policy: resumption skips the certificate (RFC 8446 2.2), so a ticket won
        under one pin or CA must not stand in for another."""
        import hashlib

        text = f"{self.pinned_sha256()}|{self.cafile}|{self.insecure}|{self.cert}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pinned_sha256(self) -> str | None:
        if not self.fingerprint:
            return None
        text = self.fingerprint.strip().lower()
        if text.startswith("sha256:"):
            text = text[7:]
        text = text.replace(":", "")
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(
                f"bad fingerprint '{self.fingerprint}': expected sha256:<64 hex digits>"
            )
        return text


def peer_certificate(driver: QuicDriver) -> object | None:
    """The server's certificate as ``cryptography`` sees it, if the handshake got that far
    (qh3 keeps it even when verification failed)."""
    from cryptography import x509

    try:
        cert = driver.quic.get_peercert()
        if cert is None:
            return None
        return x509.load_der_x509_certificate(bytes(cert.public_bytes()))
    except Exception:
        return None


def certificate_problem(cert: object, server_name: str) -> str | None:
    """What is wrong with ``cert`` for ``server_name``: time or name; None if neither."""
    import datetime
    import ipaddress

    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        return f"has expired (not valid after {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
    if cert.not_valid_before_utc > now:
        return f"is not yet valid (not before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        wanted_ip = str(ipaddress.ip_address(server_name))
        ok = wanted_ip in ips
    except ValueError:
        name = server_name.lower().rstrip(".")
        ok = any(d.lower() == name or (d.startswith("*.") and name.endswith(d[1:].lower())
                                       and name.count(".") == d.count("."))
                 for d in dns)
    if not ok:
        names = ", ".join(dns + ips) or "no names"
        return f"is not valid for that name (it is for {names})"
    return None


#: TLS alerts (RFC 8446 6.2) with which a server refuses a client's certificate.
CLIENT_CERTIFICATE_ALERTS = {
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 48: "unknown_ca",
    49: "access_denied", 116: "certificate_required",
}


def describe_failure(driver: QuicDriver, label: str, within: float,
                     server_name: str = "", tls: QuicTLSOptions | None = None
                     ) -> ConnectError:
    """The error, in one line, for a QUIC handshake that failed (RFC 9001 4.8: TLS alerts
    arrive as CRYPTO_ERROR 0x100 + alert); a rejected certificate is examined to say why.
    A certificate's failure is a :class:`CertificateError`: final (connect.py)."""
    reason = (driver.close_reason or "").strip()
    code = driver.close_error_code
    low = reason.lower()
    alert = code - 0x100 if code is not None and 0x100 <= code < 0x200 else None
    if code is None and not reason:
        if getattr(driver.quic, "authenticated", False):
            # The server answered (a packet of this connection authenticated), so UDP
            # gets through: the handshake ran out of time (loss, a busy peer).
            return ConnectError(f"QUIC handshake with {label} did not complete within "
                                f"{within:g} s")
        return ConnectError(f"no QUIC answer from {label} within {within:g} s — is UDP "
                            f"{label.rsplit(':', 1)[-1]} blocked?")
    if driver.handshake_done.is_set() and alert in CLIENT_CERTIFICATE_ALERTS:
        # Our side of the handshake ended, so the server's certificate passed our
        # checks; the server then refused ours with an alert (RFC 8446 4.4.2.4).
        what = f"TLS alert {alert}, {CLIENT_CERTIFICATE_ALERTS[alert]}"
        if tls is None or not tls.cert:
            return CertificateError(
                f"{label} refused the connection without a client certificate ({what}): "
                "give one it accepts with cert= and key=")
        return CertificateError(f"{label} refused the client certificate {tls.cert} "
                                f"({what}): give one it accepts with cert= and key=")
    if "fingerprint" in low:
        return CertificateError(f"certificate of {label} does not match the pinned "
                                "fingerprint")
    certificate_words = ("certificate", "issuer", "expired", "not yet valid", "unknown ca",
                         "self-signed", "self signed", "verify", "untrusted", "server name",
                         "hostname")  # aioquic: "hostname 'x' doesn't match ..."
    if any(w in low for w in certificate_words):
        cert = peer_certificate(driver)
        problem = certificate_problem(cert, server_name) if cert is not None else None
        if problem is not None:
            return CertificateError(f"certificate of {label} {problem}")
        if "expired" in low or "not yet valid" in low:
            return CertificateError(f"certificate of {label} has expired or is not yet "
                                    f"valid: {reason}")
        if "name" in low:
            return CertificateError(f"certificate of {label} is not valid for that name: "
                                    f"{reason}")
        return CertificateError(f"certificate of {label} is not signed by a trusted CA: "
                                f"{reason}")
    if code == 0x100 + 120 or "alpn" in low or "application protocol" in low:
        return ConnectError(f"{label} refused ALPN 'smb': it does not serve SMB over QUIC")
    detail = reason or (f"TLS alert {alert}" if alert is not None else f"error {code:#x}")
    return ConnectError(f"QUIC handshake with {label} failed: {detail}")
