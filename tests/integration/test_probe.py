"""`quicfs probe` against real servers (issue 24 item 1): the test Samba over TCP, our
gateway and the aioquic server over QUIC, closed ports, a server that does not speak
ALPN smb, certificates that are expired, for another name or not the one pinned. The
command runs as users run it where its lines and exit codes are the point; the rest call
the library (quicfs.probe) in-process, against in-process gateways where one is made for
the test, which keeps them quick."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from quicfs.cert import make_ca, make_self_signed, write_self_signed
from quicfs.gateway import Gateway
from quicfs.options import parse_options
from quicfs.probe import ProbeReport, probe, render_text
from tests.integration.test_quic_interop import AioquicGateway
from tests.support.gateway import TEST_CC

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]
#: The cipher the test gateway picks: qh3's server prefers AES-128-GCM, aioquic's (the
#: engine with QUICFS_TEST_CC=bbr) AES-256-GCM.
GATEWAY_CIPHER = "TLS_AES_256_GCM_SHA384" if TEST_CC == "bbr" else "TLS_AES_128_GCM_SHA256"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QUICFS, "probe", *args], capture_output=True, text=True,
                          timeout=60)


def closed_port() -> int:
    """A port on which nothing listens, over TCP nor UDP (bound, then let go)."""
    import socket

    with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            return closed_port()
    return port


async def probe_of(tcp_port: int, quic_port: int, extra: str = "") -> ProbeReport:
    opts = f"port={tcp_port},quic_port={quic_port},connect_timeout=5" + (
        f",{extra}" if extra else "")
    return await probe("127.0.0.1", None, parse_options(opts))


@asynccontextmanager
async def gateway_with(samba, root: Path, names: list[str], *, ca=None, **kw
                       ) -> AsyncIterator[int]:
    """Our gateway, in this process, with a certificate for ``names`` (signed by ``ca``
    if given); yields its UDP port."""
    cert_pem, key_pem = make_self_signed(names, issuer=ca, **kw)
    (root / "gw.crt").write_bytes(cert_pem)
    (root / "gw.key").write_bytes(key_pem)
    gateway = Gateway(listen=("127.0.0.1", 0), backend=("127.0.0.1", samba.port),
                      cert=str(root / "gw.crt"), key=str(root / "gw.key"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(gateway.serve)
        yield port
        nursery.cancel_scope.cancel()


def test_samba_over_tcp_and_the_gateway_over_quic(samba, gateway):
    proc = run("127.0.0.1", "-o", f"port={samba.port},quic_port={gateway.port}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    q, t = f"127.0.0.1:{gateway.port}", f"127.0.0.1:{samba.port}"
    assert lines[0] == f"quicfs probe 127.0.0.1: QUIC {q}, TCP {t}"
    assert lines[2].startswith(f"QUIC {q}: ready, connected in "), lines[2]
    assert " ms, RTT " in lines[2]
    for line in [
        "  QUIC versions        1",
        f"  TLS                  TLS 1.3, {GATEWAY_CIPHER}, ALPN smb",
        "  certificate          CN=localhost",
        "    names              localhost, 127.0.0.1",
        "    issuer             CN=localhost (self-signed)",
        "    key                EC P-256, ecdsa-with-sha256",
        f"    fingerprint        {gateway.fingerprint}",
        "  verified             no, against the system CAs, for 127.0.0.1: is not signed by "
        "a trusted CA (unable to get local issuer certificate)",
        "  client certificate   not asked for",
        "  session tickets      yes, valid 86400 s; resumption accepted",
        "SMB over QUIC and TCP: server 63697571-7366-6574-7374-000000000000",
        "  dialect              3.1.1 (accepts 3.1.1, 3.0.2, 3.0, 2.1, 2.0.2)",
        "  signing              AES-GMAC, required (accepts AES-GMAC, AES-CMAC, HMAC-SHA256)",
        "  encryption           AES-128-GCM (accepts AES-128-GCM, AES-256-GCM, AES-128-CCM, "
        "AES-256-CCM)",
        "  compression          none",
        "  transport security   over QUIC: not accepted: SMB encryption stays on top of "
        "QUIC's",
        "  max sizes            read 8 MiB, write 8 MiB, transact 8 MiB",
        "  authentication       NTLM",
        "  accepts              one NEGOTIATE each, over TCP",
        f"verdict: QUIC ready: mount with -o transport=quic,quic_port={gateway.port},"
        f"fingerprint={gateway.fingerprint}; TCP ready too (-o transport=tcp,"
        f"port={samba.port})",
    ]:
        assert line in lines, f"{line!r} not in:\n{proc.stdout}"
    assert any(line.startswith(f"TCP {t}: ready, connected in ") for line in lines)
    assert lines[-1].startswith("verdict: ")


def test_json_with_the_pin_given(samba, gateway):
    proc = run("127.0.0.1", "--json", "-o",
               f"port={samba.port},quic_port={gateway.port},fingerprint={gateway.fingerprint}")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    quic, tcp = report["quic"], report["tcp"]
    assert (quic["ready"], quic["failure"], quic["problem"]) == (True, None, None)
    assert (tcp["ready"], tcp["connected"]) == (True, True)
    assert quic["connect_ms"] > 0 and quic["rtt_ms"] > 0 and tcp["connect_ms"] > 0
    assert quic["quic_versions"] == ["1"]
    tls = quic["tls"]
    assert (tls["version"], tls["cipher"], tls["alpn"]) == ("TLS 1.3", GATEWAY_CIPHER, "smb")
    [cert] = tls["chain"]
    assert cert["fingerprint"] == gateway.fingerprint
    assert cert["names"] == ["localhost", "127.0.0.1"] and cert["self_signed"]
    assert 360 <= cert["days_left"] <= 365
    assert tls["verification"] == {
        "against": "the system CAs", "name": "127.0.0.1", "ok": False,
        "problem": "is not signed by a trusted CA (unable to get local issuer certificate)",
        "issuer_trusted": False, "pin_matches": True}
    assert (tls["client_certificate_requested"], tls["session_tickets"],
            tls["ticket_lifetime"], tls["resumption"]) == (False, True, 86400, True)
    smb = quic["smb"]
    assert smb["dialect"] == "3.1.1" and smb["transport_security"] is False
    assert smb["server_guid"] == tcp["smb"]["server_guid"]
    assert smb["authentication"] == ["NTLM"] and smb["compression"] == []
    assert "LARGE_MTU" in smb["capabilities"] and "LEASING" in smb["capabilities"]
    assert tcp["smb"]["transport_security"] is None  # not asked over TCP
    assert tcp["smb"]["accepts"] == {
        "over": "tcp", "dialects": ["3.1.1", "3.0.2", "3.0", "2.1", "2.0.2"],
        "ciphers": ["AES-128-GCM", "AES-256-GCM", "AES-128-CCM", "AES-256-CCM"],
        "signing": ["AES-GMAC", "AES-CMAC", "HMAC-SHA256"], "unknown": []}
    assert report["quic_options"] == (f"transport=quic,quic_port={gateway.port},"
                                      f"fingerprint={gateway.fingerprint}")
    assert report["exit_code"] == 0


@pytest.mark.parametrize("which", ["tcp-only", "quic-only", "neither"])
def test_exit_codes_say_which_transport_is_ready(samba, gateway, which):
    closed = closed_port()
    tcp = samba.port if which == "tcp-only" else closed
    quic = gateway.port if which == "quic-only" else closed
    proc = run("127.0.0.1", "-o", f"port={tcp},quic_port={quic}")
    assert proc.stderr == ""
    refused_quic = (f"connection refused by 127.0.0.1:{closed}: nothing listens on UDP port "
                    f"{closed} (ICMP port unreachable)")
    refused_tcp = (f"connection refused by 127.0.0.1:{closed} (is an SMB server listening "
                   "there?)")
    verdict = proc.stdout.splitlines()[-1]
    if which == "tcp-only":
        assert proc.returncode == 3
        assert verdict == (f"verdict: TCP ready: mount with -o transport=tcp,port={tcp}; "
                           f"QUIC not: {refused_quic}")
    elif which == "quic-only":
        assert proc.returncode == 4
        assert verdict.startswith(f"verdict: QUIC ready: mount with -o transport=quic,"
                                  f"quic_port={quic},fingerprint=sha256:")
        assert verdict.endswith(f"; TCP not: {refused_tcp}")
    else:
        assert proc.returncode == 1
        assert verdict == f"verdict: not ready: QUIC: {refused_quic}; TCP: {refused_tcp}"
        assert f"  why                  {refused_tcp}" in proc.stdout.splitlines()


def test_one_transport_asked(samba):
    proc = run(f"127.0.0.1:{samba.port}", "--json", "-o", "transport=tcp")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["quic"]["probed"] is False and report["tcp"]["ready"] is True
    assert report["verdict"] == f"TCP ready: mount with -o transport=tcp,port={samba.port}"


@pytest.mark.parametrize(("args", "message"), [
    (["host:abc"], "quicfs: bad port 'abc' in 'host:abc'"),
    (["//"], "quicfs: no server in '//': expected HOST[:PORT]"),
    (["127.0.0.1", "-o", "fingerprint=sha256:zz"],
     "quicfs: bad fingerprint 'sha256:zz': expected sha256:<64 hex digits>"),
    (["127.0.0.1", "-o", "cafile=/nonexistent/ca.pem"],
     "quicfs: cafile=/nonexistent/ca.pem: no such file"),
    (["127.0.0.1", "-o", "cert=/etc/hostname"],
     "quicfs: a certificate needs both cert= and key="),
    (["127.0.0.1", "-o", "frobnicate"], "quicfs: unknown option 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message + "\n")


async def test_aioquic_asks_for_a_client_certificate(samba, tmp_path):
    (tmp_path / "server").mkdir()
    gw = AioquicGateway(tmp_path / "server", samba.port, request_client_cert=True)
    try:
        report = await probe_of(samba.port, gw.port)
        mine = write_self_signed("quicfs-client", tmp_path)
        with_cert = await probe_of(samba.port, gw.port, f"cert={mine.cert},key={mine.key}")
    finally:
        gw.stop()
    quic = report.quic
    assert quic.ready and quic.tls is not None
    assert quic.tls.client_certificate_requested
    assert quic.tls.client_certificate_authorities == []
    assert quic.tls.session_tickets is False  # aioquic's server keeps none
    lines = render_text(report).splitlines()
    assert "  client certificate   asked for (names no CA); none sent (cert=, key=)" in lines
    assert "  session tickets      none sent" in lines
    assert lines[-1].startswith("verdict: QUIC ready: mount with -o transport=quic,")
    assert "(it asks for a client certificate: add cert= and key= if it admits only known " \
           "clients); TCP ready too" in lines[-1]
    assert report.exit_code == 0
    assert with_cert.quic.ready
    assert f"  client certificate   asked for (names no CA); sent {mine.cert}" in \
        render_text(with_cert).splitlines()
    assert with_cert.quic_options.endswith(f",cert={mine.cert},key={mine.key}")
    assert gw.text().count(f"client certificate: {mine.fingerprint}") == 1, gw.text()


async def test_a_server_that_requires_a_client_certificate(samba, tmp_path):
    (tmp_path / "server").mkdir()
    gw = AioquicGateway(tmp_path / "server", samba.port, require_client_cert="sha256:" + "0" * 64)
    try:
        report = await probe_of(samba.port, gw.port)
    finally:
        gw.stop()
    quic = report.quic
    assert (quic.connected, quic.ready, quic.failure) == (False, False, "client-certificate")
    assert quic.problem == (f"127.0.0.1:{gw.port} refused the connection without a client "
                            "certificate (TLS alert 116, certificate_required): give one it "
                            "accepts with cert= and key=")
    # What the handshake showed before the refusal is still told.
    assert quic.tls is not None and quic.tls.client_certificate_requested
    assert quic.tls.chain[0].fingerprint == gw.fingerprint
    assert report.exit_code == 3


async def test_a_server_without_alpn_smb(samba, tmp_path):
    gw = AioquicGateway(tmp_path, samba.port, alpn="h3")
    try:
        report = await probe_of(samba.port, gw.port)
    finally:
        gw.stop()
    assert (report.quic.ready, report.quic.failure) == (False, "alpn")
    assert report.quic.problem == (f"127.0.0.1:{gw.port} refused ALPN 'smb': it does not "
                                   "serve SMB over QUIC")
    assert report.quic.quic_versions == ["1", "2"]  # aioquic is there all the same
    assert report.exit_code == 3
    assert render_text(report).splitlines()[-1] == (
        f"verdict: TCP ready: mount with -o transport=tcp,port={samba.port}; QUIC not: "
        f"{report.quic.problem}")


async def test_certificates_from_a_ca(samba, tmp_path):
    ca = make_ca()
    cafile = tmp_path / "ca.crt"
    cafile.write_bytes(ca[0])
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    async with gateway_with(samba, tmp_path, ["localhost", "127.0.0.1"], ca=ca) as good:
        verified = await probe_of(samba.port, good, f"cafile={cafile}")
        system = await probe_of(samba.port, good)
    (tmp_path / "old").mkdir()
    async with gateway_with(samba, tmp_path / "old", ["127.0.0.1"], ca=ca, days=1,
                            not_before=old) as expired:
        stale = await probe_of(samba.port, expired, f"cafile={cafile}")
    (tmp_path / "other").mkdir()
    async with gateway_with(samba, tmp_path / "other", ["elsewhere.example"], ca=ca) as other:
        misnamed = await probe_of(samba.port, other, f"cafile={cafile}")
        wrong_pin = await probe_of(samba.port, other, "fingerprint=sha256:" + "ab" * 32)

    check = verified.quic.tls.verification
    assert (check.ok, check.against, check.name) == (True, f"cafile={cafile}", "127.0.0.1")
    assert f"  verified             yes, against cafile={cafile}, for 127.0.0.1" in \
        render_text(verified).splitlines()
    assert verified.quic_options == f"transport=quic,quic_port={good},cafile={cafile}"
    assert verified.exit_code == 0
    # Without cafile= the same server is one to pin.
    assert system.quic.ready and "fingerprint=sha256:" in system.quic_options

    expiry = stale.quic.tls.chain[0].not_after.replace("T", " ")[:16]
    assert (stale.quic.ready, stale.quic.failure) == (False, "certificate")
    assert stale.quic.problem == (f"certificate of 127.0.0.1:{expired} has expired (not "
                                  f"valid after {expiry} UTC)")
    assert stale.quic.tls.chain[0].days_left < 0
    assert stale.exit_code == 3
    assert f"({-stale.quic.tls.chain[0].days_left} days ago)" not in render_text(stale)
    assert f"(expired {-stale.quic.tls.chain[0].days_left} days ago)" in render_text(stale)

    assert (misnamed.quic.ready, misnamed.quic.failure) == (False, "certificate")
    assert misnamed.quic.problem == (f"certificate of 127.0.0.1:{other} is not valid for that "
                                     "name (it is for elsewhere.example)")
    assert misnamed.quic.tls.verification.issuer_trusted

    assert wrong_pin.quic.failure == "certificate"
    assert wrong_pin.quic.problem == (
        f"certificate of 127.0.0.1:{other} does not match the pinned fingerprint (it is "
        f"{wrong_pin.quic.tls.chain[0].fingerprint})")
    assert "  pinned               does NOT match fingerprint=" in \
        render_text(wrong_pin).splitlines()
