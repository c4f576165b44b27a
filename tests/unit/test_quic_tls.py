"""quic/tls.py and the client's configuration: how the server's certificate is checked,
and what a failed handshake is told as (RFC 9001 4.8: a TLS alert arrives as CRYPTO_ERROR
0x100 + alert). Synchronous: a driver is what the handshake left, here made up."""

from __future__ import annotations

import datetime
import hashlib
import ssl
import types

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from quicfs.cert import make_self_signed
from quicfs.errors import CertificateError, ConnectError, UsageError
from quicfs.transport.quic.configuration import client_configuration
from quicfs.transport.quic.tls import QuicTLSOptions, certificate_problem, describe_failure

DAY = datetime.timedelta(days=1)
LABEL = "gw.example:443"


def certificate(*names: str, days: int = 30, not_before: datetime.datetime | None = None
                ) -> x509.Certificate:
    pem, _ = make_self_signed(list(names), days=days, not_before=not_before)
    return x509.load_pem_x509_certificate(pem)


def ended(reason: str = "", code: int | None = None, *, our_side_done: bool = False,
          cert: x509.Certificate | None = None) -> types.SimpleNamespace:
    """What a driver keeps of a handshake that ended: the peer's words and code, whether
    our side of it ended, and the server's certificate as its engine kept it."""
    done = trio.Event()
    if our_side_done:
        done.set()
    der = cert.public_bytes(Encoding.DER) if cert is not None else None
    peercert = None if der is None else types.SimpleNamespace(public_bytes=lambda: der)
    return types.SimpleNamespace(close_reason=reason, close_error_code=code,
                                 handshake_done=done,
                                 quic=types.SimpleNamespace(get_peercert=lambda: peercert))


# ------------------------------------------------------------------ the options
def test_a_fingerprint_is_read_in_any_of_its_spellings() -> None:
    der = b"certificate"
    digest = hashlib.sha256(der).hexdigest()
    colons = ":".join(digest[i:i + 2] for i in range(0, 64, 2)).upper()
    for text in (digest, f"sha256:{digest}", f"SHA256:{colons}", f"  {digest}\n"):
        assert QuicTLSOptions(fingerprint=text).pinned_sha256() == digest
    assert QuicTLSOptions().pinned_sha256() is None
    for bad in ("sha256:abc", "md5:" + digest, digest[:-1] + "g"):
        with pytest.raises(UsageError, match="bad fingerprint"):
            QuicTLSOptions(fingerprint=bad).pinned_sha256()


def test_a_ticket_is_kept_per_verification_policy() -> None:
    """Resumption skips the certificate (RFC 8446 2.2): a ticket won under one pin, CA or
    client certificate must not stand in for another."""
    pin = "sha256:" + "ab" * 32
    policies = [QuicTLSOptions(), QuicTLSOptions(fingerprint=pin),
                QuicTLSOptions(fingerprint="sha256:" + "cd" * 32), QuicTLSOptions(cafile="ca"),
                QuicTLSOptions(insecure=True), QuicTLSOptions(cert="c", key="k")]
    assert len({p.policy_id() for p in policies}) == len(policies)
    # The same policy however the pin is spelled.
    assert QuicTLSOptions(fingerprint=pin).policy_id() == \
        QuicTLSOptions(fingerprint=("AB:" * 32)[:-1]).policy_id()


def test_the_client_configuration_checks_as_asked(tmp_path) -> None:
    pin = "ab" * 32
    pinned = client_configuration("gw", QuicTLSOptions(fingerprint=pin))
    # A pin stands on its own: no CA, no name.
    assert pinned.verify_mode == ssl.CERT_NONE and pinned.assert_fingerprint == pin
    assert client_configuration("gw", QuicTLSOptions()).verify_mode == ssl.CERT_REQUIRED
    assert client_configuration("gw", QuicTLSOptions(insecure=True)).verify_mode == \
        ssl.CERT_NONE
    with pytest.raises(UsageError, match="no such file"):
        client_configuration("gw", QuicTLSOptions(cafile=str(tmp_path / "none.pem")))
    with pytest.raises(UsageError, match="both cert= and key="):
        client_configuration("gw", QuicTLSOptions(cert=str(tmp_path / "c.pem")))


# ------------------------------------------------------------------ a certificate's problem
def test_a_certificate_out_of_its_time_says_when() -> None:
    now = datetime.datetime.now(datetime.UTC)
    old = certificate("gw.example", days=1, not_before=now - 10 * DAY)
    assert certificate_problem(old, "gw.example").startswith("has expired (not valid after ")
    early = certificate("gw.example", not_before=now + DAY)
    assert certificate_problem(early, "gw.example").startswith("is not yet valid (not before ")


def test_a_certificate_for_other_names_lists_them() -> None:
    cert = certificate("gw.example", "192.0.2.7")
    assert certificate_problem(cert, "gw.example") is None
    assert certificate_problem(cert, "GW.Example.") is None
    assert certificate_problem(cert, "192.0.2.7") is None
    assert certificate_problem(cert, "other.example") == \
        "is not valid for that name (it is for gw.example, 192.0.2.7)"
    assert certificate_problem(cert, "192.0.2.8") is not None


def test_a_wildcard_covers_one_label() -> None:
    cert = certificate("*.example.org")
    assert certificate_problem(cert, "gw.example.org") is None
    assert certificate_problem(cert, "a.gw.example.org") is not None
    assert certificate_problem(cert, "example.org") is not None


# ------------------------------------------------------------------ the failure, in one line
def test_silence_is_no_answer_and_names_the_port() -> None:
    failure = describe_failure(ended(), LABEL, 5.0)
    assert type(failure) is ConnectError
    assert str(failure) == ("no QUIC answer from gw.example:443 within 5 s — is UDP 443 "
                            "blocked?")


@pytest.mark.parametrize("cert", [None, "me.crt"])
def test_a_refused_client_certificate_is_final(cert: str | None) -> None:
    """Our side ended, so the server's certificate passed; then the server refused ours
    (RFC 8446 4.4.2.4): alert 116 certificate_required, or 48 unknown_ca."""
    tls = QuicTLSOptions(cert=cert, key="me.key" if cert else None)
    failure = describe_failure(ended("", 0x100 + 116, our_side_done=True), LABEL, 5.0,
                               "gw.example", tls)
    assert isinstance(failure, CertificateError)
    wanted = "without a client certificate" if cert is None else "the client certificate me.crt"
    assert wanted in str(failure) and "TLS alert 116, certificate_required" in str(failure)
    # The same alert before our side ended is the server's certificate failing with us.
    assert not str(describe_failure(ended("", 0x100 + 116), LABEL, 5.0)).startswith(
        "gw.example:443 refused")


def test_a_pin_that_does_not_match() -> None:
    failure = describe_failure(ended('Fingerprints did not match. Expected "ab"', 0x100 + 42),
                               LABEL, 5.0, "gw.example")
    assert isinstance(failure, CertificateError)
    assert str(failure) == "certificate of gw.example:443 does not match the pinned fingerprint"


def test_a_rejected_certificate_is_examined_for_why() -> None:
    now = datetime.datetime.now(datetime.UTC)
    old = certificate("gw.example", days=1, not_before=now - 10 * DAY)
    failure = describe_failure(ended("certificate verify failed", 0x100 + 42, cert=old),
                               LABEL, 5.0, "gw.example")
    assert isinstance(failure, CertificateError)
    assert str(failure).startswith("certificate of gw.example:443 has expired (not valid after")
    # Nothing wrong with its time or name: the CA is what remains.
    good = certificate("gw.example")
    failure = describe_failure(ended("unable to verify issuer", 0x100 + 48, cert=good),
                               LABEL, 5.0, "gw.example")
    assert str(failure) == ("certificate of gw.example:443 is not signed by a trusted CA: "
                            "unable to verify issuer")
    # No certificate kept: the peer's words decide.
    failure = describe_failure(ended("hostname mismatch", 0x100 + 42), LABEL, 5.0)
    assert str(failure).startswith("certificate of gw.example:443 is not valid for that name")


def test_no_alpn_smb_and_other_failures() -> None:
    failure = describe_failure(ended("", 0x100 + 120), LABEL, 5.0)
    assert type(failure) is ConnectError and "refused ALPN 'smb'" in str(failure)
    failure = describe_failure(ended("", 0x100 + 40), LABEL, 5.0)
    assert str(failure) == "QUIC handshake with gw.example:443 failed: TLS alert 40"
    failure = describe_failure(ended("", 0x0A), LABEL, 5.0)
    assert str(failure) == "QUIC handshake with gw.example:443 failed: error 0xa"
