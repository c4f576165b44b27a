"""`quicfs cert new`: files, modes, and a fingerprint that matches the certificate."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys

from cryptography import x509


def test_cert_new(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "quicfs.cli.main", "cert", "new", "--name", "gw.test",
         "--alt", "127.0.0.1", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    crt, key = tmp_path / "gw.test.crt", tmp_path / "gw.test.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    der = cert.public_bytes(encoding=__import__("cryptography.hazmat.primitives.serialization",
                                                fromlist=["Encoding"]).Encoding.DER)
    expected = "sha256:" + hashlib.sha256(der).hexdigest()
    assert f"fingerprint={expected}" in proc.stdout.splitlines()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
