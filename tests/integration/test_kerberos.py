"""Kerberos logins as a user makes them: `kinit`, then `quicfs` with no password, against a
real Samba AD domain controller (tools/localdc.py, the ``samba_dc`` fixture), over TCP
and over QUIC through the real gateway; and each way it fails without a usable ticket,
in one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.kdc_proxy import KdcProxy
from tools.localdc import GATEWAY_HOST, REALM

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]
TRANSPORTS = ["tcp", "quic"]


def run(env: dict[str, str], *args: str, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*QUICFS, *args], env=env, input=stdin, capture_output=True,
                          timeout=60)


def one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """This test's ticket cache (empty until a kinit)."""
    return tmp_path / "krb5cc"


def where(transport: str, dc, gateway: GatewayProcess, share: str, path: str = ""
          ) -> tuple[str, str]:
    """(URL, -o options) of ``share`` over ``transport``, with a user and no password."""
    if transport == "quic":
        return (gateway.url(share, path),
                f"transport=quic,fingerprint={gateway.fingerprint},username={dc.username}")
    return dc.url(share, path), f"transport=tcp,username={dc.username}"


def service_tickets(dc, cache: Path) -> list[str]:
    """The cifs/ principals klist names (MIT lists a ticket got through a referral as
    'cifs/HOST@', then its 'Ticket server: cifs/HOST@REALM')."""
    out = subprocess.run(["klist", str(cache)], env=dc.env(cache), capture_output=True,
                         text=True, check=True).stdout
    return [word for line in out.splitlines() for word in line.split()
            if word.startswith("cifs/")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ls_with_a_ticket_and_no_password(samba_dc, dc_gateway, cache, transport):
    folder = samba_dc.share_path("kerb") / f"ls-{transport}"
    folder.mkdir()
    (folder / "seen.txt").write_bytes(b"x" * 1234)
    samba_dc.kinit(cache)
    url, options = where(transport, samba_dc, dc_gateway, "kerb", folder.name)
    proc = run(samba_dc.env(cache), "ls", "-o", options, url)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stdout.decode().splitlines() if ln.endswith(" seen.txt")]
    assert line.split()[1] == "1234"
    # Kerberos it was: the cache now holds a ticket for the server as the URL names it.
    host = samba_dc.host if transport == "tcp" else GATEWAY_HOST
    tickets = service_tickets(samba_dc, cache)
    assert f"cifs/{host}@{REALM}" in tickets
    assert {t.split("@")[0] for t in tickets} == {f"cifs/{host}"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_put_and_get_on_a_sealed_share_byte_exact(samba_dc, dc_gateway, cache, transport):
    """``kerbsealed`` wants encryption and the DC's one cipher is AES-256-GCM, whose keys
    come from the whole 32-byte Kerberos subkey (MS-SMB2 3.2.5.3.1); the signing key from
    its first 16 bytes, which the last SESSION_SETUP response is checked with."""
    data = os.urandom(2 * 1024 * 1024 + 77)
    samba_dc.kinit(cache)
    env = samba_dc.env(cache)
    name = f"sealed-{transport}.bin"
    url, options = where(transport, samba_dc, dc_gateway, "kerbsealed", name)
    proc = run(env, "put", "-o", options, "-", url, stdin=data)
    assert proc.returncode == 0, proc.stderr
    assert (samba_dc.share_path("kerbsealed") / name).read_bytes() == data
    proc = run(env, "get", "-o", options, url, "-")
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(proc.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_domain_option_names_the_realm(samba_dc, cache):
    """cifs-style ``domain=``: a DNS domain is the realm (alice@QUICFS.TEST), a NetBIOS
    one names none and the default realm is taken; both find alice's ticket."""
    samba_dc.kinit(cache)
    for domain in ("quicfs.test", "QUICFS"):
        proc = run(samba_dc.env(cache), "ls", "-o",
                   f"transport=tcp,username=alice,domain={domain}", samba_dc.url("kerb"))
        assert proc.returncode == 0, (domain, proc.stderr)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_ticket_and_no_password(samba_dc, dc_gateway, cache, transport):
    url, options = where(transport, samba_dc, dc_gateway, "kerb")
    proc = run(samba_dc.env(cache), "ls", "-o", options, url)
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: no password given and no Kerberos ticket in FILE:{cache}: run kinit "
        "first, or give password= or credentials=")


def test_a_ticket_for_another_principal(samba_dc, cache):
    samba_dc.kinit(cache, "bob")
    proc = run(samba_dc.env(cache), "ls", "-o", "transport=tcp,username=alice",
               samba_dc.url("kerb"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: no Kerberos ticket for alice@{REALM} in FILE:{cache}, which holds "
        f"bob@{REALM}'s: run kinit alice@{REALM}, or give username=bob@{REALM}")


def test_an_expired_ticket(samba_dc, cache):
    samba_dc.kinit(cache, lifetime="2s")
    env = samba_dc.env(cache)
    deadline = time.monotonic() + 30
    # klist -s: exit status 1 once the cache holds no valid ticket.
    while subprocess.run(["klist", "-s"], env=env).returncode == 0:
        assert time.monotonic() < deadline, "a 2 s ticket still valid after 30 s"
        time.sleep(0.2)
    proc = run(env, "ls", "-o", "transport=tcp,username=alice", samba_dc.url("kerb"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: the Kerberos ticket for alice@{REALM} in FILE:{cache} has expired: "
        f"run kinit alice@{REALM} again")


def test_a_server_name_the_kdc_does_not_know(samba_dc, dc_gateway, cache):
    """The gateway dialled as 'localhost': the KDC has no cifs/localhost, and says so."""
    samba_dc.kinit(cache)
    url = f"//localhost:{dc_gateway.port}/kerb"
    proc = run(samba_dc.env(cache), "ls", "-o",
               f"transport=quic,fingerprint={dc_gateway.fingerprint},username=alice", url)
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        "quicfs: Kerberos login to cifs/localhost failed: Server not found in Kerberos "
        "database")


def test_kinit_and_ls_through_an_https_kdc_proxy(samba_dc, cache, tmp_path):
    """MS-KKDCP, as Windows reaches a KDC from outside: the client's krb5.conf names only
    ``kdc = https://localhost:PORT/KdcProxy`` (MIT krb5 with krb5-k5tls), the proxy is
    the kdcproxy package's, and every Kerberos message of kinit and of quicfs's login
    (the service ticket) goes through it."""
    with KdcProxy(tmp_path / "proxy", REALM, samba_dc.host) as proxy:
        conf = samba_dc.write_krb5_conf(tmp_path / "krb5.conf", kdc=proxy.url,
                                        http_anchors=proxy.cert)
        samba_dc.kinit(cache, krb5_conf=conf)
        after_kinit = proxy.requests
        assert after_kinit >= 1
        proc = run(samba_dc.env(cache, conf), "ls", "-o", "transport=tcp,username=alice",
                   samba_dc.url("kerb"))
        assert proc.returncode == 0, proc.stderr
        assert proxy.requests == after_kinit + 1  # the TGS exchange for cifs/<host>
    assert f"cifs/{samba_dc.host}@{REALM}" in service_tickets(samba_dc, cache)
