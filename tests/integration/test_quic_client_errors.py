"""QUIC handshakes that fail after our side is done, and session tickets that cannot be
offered: one clear line each, never "internal error" (issue 20, items 16 and 17)."""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from qh3.tls import CipherSuite, SessionTicket

import quicfs
from quicfs.cert import fingerprint, write_self_signed
from quicfs.transport.quic import QuicTLSOptions, TicketStore
from tests.integration.test_quic import one_line_error
from tests.integration.test_quic_interop import AioquicGateway

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]


@pytest.fixture
def picky_gateway(samba, tmp_path):
    """An aioquic server that admits one client certificate (``.client``) only."""
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    (tmp_path / "other").mkdir()
    client = write_self_signed("quicfs-client", tmp_path / "client")
    other = write_self_signed("someone-else", tmp_path / "other")
    gw = AioquicGateway(tmp_path / "server", samba.port,
                        require_client_cert=fingerprint(Path(client.cert).read_bytes()))
    gw.client, gw.other = client, other
    yield gw
    gw.stop()


def ls(opts: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QUICFS, "ls", "-o", opts, url], capture_output=True, timeout=60)


@pytest.mark.parametrize("transport", ["quic", "auto"])
def test_server_requires_a_client_certificate(samba, picky_gateway, transport):
    gw = picky_gateway
    base = (f"transport={transport},fingerprint={gw.fingerprint},username={samba.username},"
            f"password={samba.password}")
    url = f"//127.0.0.1:{gw.port}/plain"
    if transport == "auto":
        # No TCP server on the URL's port: QUIC's own error must be the one shown.
        base += f",quic_port={gw.port}"
        url = "//127.0.0.1:1/plain"
    proc = ls(base, url)
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: 127.0.0.1:{gw.port} refused the connection without a client certificate "
        "(TLS alert 116, certificate_required): give one it accepts with cert= and key=")

    proc = ls(f"{base},cert={gw.other.cert},key={gw.other.key}", url)
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: 127.0.0.1:{gw.port} refused the client certificate {gw.other.cert} "
        "(TLS alert 42, bad_certificate): give one it accepts with cert= and key=")

    proc = ls(f"{base},cert={gw.client.cert},key={gw.client.key}", url)
    assert proc.returncode == 0, proc.stderr


async def test_refused_certificate_is_a_connect_error(samba, picky_gateway):
    """The library says the same as the CLI: the connection is never 'ready'."""
    gw = picky_gateway
    opts = (f"transport=quic,fingerprint={gw.fingerprint},username={samba.username},"
            f"password={samba.password}")
    with pytest.raises(quicfs.errors.CertificateError) as info:
        async with quicfs.connect(f"//127.0.0.1:{gw.port}/plain", opts):
            pass
    assert str(info.value).startswith(f"127.0.0.1:{gw.port} refused the connection without")


def big_ticket(server_name: str, size: int = 554) -> SessionTicket:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # qh3's are naive UTC
    return SessionTicket(
        age_add=1, cipher_suite=CipherSuite.AES_128_GCM_SHA256,
        not_valid_after=now + datetime.timedelta(days=1), not_valid_before=now,
        resumption_secret=os.urandom(32), server_name=server_name,
        ticket=os.urandom(size), max_early_data_size=0xFFFFFFFF)


async def test_oversized_ticket_is_dropped_and_full_handshake_done(samba, gateway, caplog):
    """A ticket too big for qh3's ClientHello (quic-go's carry the client certificate
    chain): the connection succeeds with a full handshake and the ticket is gone. The
    limit is qh3's, so the client is (cc=cubic); aioquic's ClientHello takes it."""
    store = TicketStore()
    policy = QuicTLSOptions(fingerprint=gateway.fingerprint).policy_id()
    planted = big_ticket(gateway.host)
    store.save(gateway.host, gateway.port, policy, planted)
    path = store._path(gateway.host, gateway.port, policy)
    assert pickle.loads(path.read_bytes()).ticket == planted.ticket
    with caplog.at_level(logging.WARNING, "quicfs.quic"):
        for _ in range(2):
            async with quicfs.connect(gateway.url("plain"),
                                      gateway.options(samba, cc="cubic")) as s:
                assert s.transport == "quic"
                await s.listdir("")
    dropped = [r.getMessage() for r in caplog.records if "session ticket" in r.getMessage()]
    assert dropped == [f"127.0.0.1:{gateway.port}: stored session ticket unusable "
                       "(BufferWriteError: Write out of bounds): dropped, full handshake"]
    # The gateway's own ticket took its place, and the second connection resumed with it.
    kept = store.load(gateway.host, gateway.port, policy)
    assert kept is not None and kept.ticket != planted.ticket
    assert s.conn.transport.driver.session_resumed


def test_ticket_that_cannot_be_offered_is_not_kept():
    from quicfs.transport.quic.client import offerable
    from quicfs.transport.quic.configuration import client_configuration

    config = client_configuration("localhost", QuicTLSOptions(fingerprint="sha256:" + "0" * 64))
    addr = ("127.0.0.1", 443)
    assert offerable(config, big_ticket("localhost", 64), addr)
    assert not offerable(config, big_ticket("localhost", 554), addr)


def test_ticket_files_are_read_only_when_ours_alone(tmp_path, caplog):
    """A ticket file is unpickled only if it is a regular 0600 file of ours, never through
    a symlink; and only the classes a ticket is made of."""
    store = TicketStore(str(tmp_path))
    ticket = big_ticket("srv", 64)
    store.save("srv", 443, "p", ticket)
    path = store._path("srv", 443, "p")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("srv", 443, "p").ticket == ticket.ticket
    os.chmod(path, 0o640)
    assert store.load("srv", 443, "p") is None
    os.chmod(path, 0o600)
    # A symlink planted where the ticket goes, pointing at a good ticket file: refused.
    real = tmp_path / "elsewhere"
    path.rename(real)
    path.symlink_to(real)
    with caplog.at_level(logging.WARNING, "quicfs.quic"):
        assert store.load("srv", 443, "p") is None
    assert any("not used" in r.getMessage() for r in caplog.records)
    path.unlink()
    # A pickle that would run code is not a ticket.
    path.write_bytes(pickle.dumps(Path("x")))
    os.chmod(path, 0o600)
    assert store.load("srv", 443, "p") is None
    # Saving never writes through a link planted at the temporary name.
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    path.with_suffix(".tmp").symlink_to(victim)
    store.save("srv", 443, "p", ticket)
    assert victim.read_bytes() == b"keep me"
    assert store.load("srv", 443, "p").ticket == ticket.ticket


async def test_reconnect_survives_a_transport_that_cannot_open(samba, gateway, monkeypatch):
    """A reconnect whose transport fails to open in an unforeseen way tries again; the
    share comes back (a mount died at its first reconnect)."""
    from quicfs.transport.quic import client

    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        await s.write_file("r.bin", b"r" * 100)
        real = client.start_engine
        failures = []

        def flaky(*args, **kwargs):  # whichever engine cc= chose
            if not failures:
                failures.append(1)
                raise RuntimeError("engine could not start")
            return real(*args, **kwargs)

        monkeypatch.setattr(client, "start_engine", flaky)
        s.conn.abandon("test: connection dropped")
        with trio.fail_after(30):
            assert await s.read_file("r.bin") == b"r" * 100
        assert failures and s.uplink.stats.reconnects == 1
