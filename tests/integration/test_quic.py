"""SMB over QUIC through our gateway to the real smbd: content, certificates, migration,
racing, resumption."""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import quicfs
from quicfs.cert import make_ca, make_self_signed
from quicfs.errors import ConnectError
from tests.support.gateway import GatewayProcess, free_udp_port

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]
SHARES = ["plain", "signed", "sealed"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*QUICFS, *args], capture_output=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    return lines[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("share", SHARES)
async def test_round_trips_over_quic(samba, gateway, share):
    async with quicfs.connect(gateway.url(share), gateway.options(samba)) as s:
        assert s.transport == "quic"
        # QUIC carries SMB 3.1.1 with the transport capabilities context; the server here
        # is Samba behind our gateway, which does not echo it, so SMB keeps its own
        # signing/encryption: both layers protect the data.
        assert s.conn.params.dialect == 0x0311
        for size in (0, 1, 64 * 1024 + 1, 10 * 1024 * 1024):
            data = os.urandom(size)
            await s.write_file(f"q-{size}.bin", data)
            assert sha(await s.read_file(f"q-{size}.bin")) == sha(data)
            assert sha((samba.share_path(share) / f"q-{size}.bin").read_bytes()) == sha(data)


@pytest.mark.slow
@pytest.mark.parametrize("share", SHARES)
def test_cli_200mib_over_quic(samba, gateway, share, tmp_path):
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    proc = run("put", "-o", gateway.options(samba), str(src), gateway.url(share, "q200.bin"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.bin"
    proc = run("get", "-o", gateway.options(samba), gateway.url(share, "q200.bin"), str(out))
    assert proc.returncode == 0, proc.stderr

    def digest(p):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    assert digest(out) == digest(src) == digest(samba.share_path(share) / "q200.bin")
    os.unlink(samba.share_path(share) / "q200.bin")


async def test_client_migration_mid_transfer(samba, gateway):
    """The client moves to a new UDP socket while a transfer runs: byte-exact, and the
    same SMB connection carries on (no reconnect)."""
    data = os.urandom(24 * 1024 * 1024)
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        transport = s.conn.transport
        conn = s.conn
        await s.write_file("mig.bin", data)
        received = bytearray()
        migrated = 0

        async def sink(chunk: bytes) -> None:
            nonlocal migrated
            received.extend(chunk)
            if len(received) >= (migrated + 1) * 6 * 1024 * 1024 and migrated < 3:
                migrated += 1
                await transport.migrate()

        async with s.opened("mig.bin") as f:
            await f.read_stream(sink, size_hint=f.size)
        assert sha(bytes(received)) == sha(data)
        assert transport.migrations == 3
        assert s.conn is conn and not conn.closed
        # Writes after migrating land too.
        await s.write_file("mig2.bin", data[:1000])
        assert await s.read_file("mig2.bin") == data[:1000]


async def test_second_connection_resumes_tls_session(samba, gateway):
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        first = s.conn.transport.driver.session_resumed
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        assert s.conn.transport.driver.session_resumed, "no TLS resumption on reconnect"
        await s.listdir("")
    assert first in (False, True)  # the first may resume from an earlier test
    # Tickets live in a 0600 file per server under the user's cache directory.
    store = Path(os.environ["XDG_CACHE_HOME"]) / "quicfs" / "tickets"
    files = [p for p in store.iterdir() if p.name.startswith(f"127.0.0.1_{gateway.port}_")]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_auto_picks_quic_when_tcp_is_closed(samba, gateway):
    closed_tcp = free_tcp_port()
    opts = (f"transport=auto,port={closed_tcp},quic_port={gateway.port},"
            f"fingerprint={gateway.fingerprint},username={samba.username},"
            f"password={samba.password}")
    proc = run("-v", "ls", "-o", opts, f"//{gateway.host}/plain")
    assert proc.returncode == 0, proc.stderr
    assert b"transport=auto chose quic" in proc.stderr


def test_auto_picks_tcp_when_udp_is_dropped(samba):
    silent_udp = free_udp_port()  # nothing listens: every datagram is lost
    opts = (f"transport=auto,port={samba.port},quic_port={silent_udp},"
            f"username={samba.username},password={samba.password}")
    proc = run("-v", "ls", "-o", opts, f"//{samba.host}/plain", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"transport=auto chose tcp" in proc.stderr


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_quic_answer(samba):
    port = free_udp_port()
    proc = run("ls", "-o", "transport=quic,connect_timeout=1,username=u,password=p",
               f"//127.0.0.1:{port}/plain")
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: no QUIC answer from 127.0.0.1:{port} within 1 s — is UDP {port} blocked?"
    )


def test_wrong_fingerprint(samba, gateway):
    bad = "sha256:" + "00" * 32
    proc = run("ls", "-o", f"transport=quic,fingerprint={bad},username={samba.username},"
               f"password={samba.password}", gateway.url("plain"))
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: certificate of 127.0.0.1:{gateway.port} does not match the pinned "
        "fingerprint"
    )


def test_unknown_ca(samba, gateway):
    # No cafile, no pin: the self-signed gateway certificate is not trusted.
    proc = run("ls", "-o", f"transport=quic,username={samba.username},"
               f"password={samba.password}", gateway.url("plain"))
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line.startswith(
        f"quicfs: certificate of 127.0.0.1:{gateway.port} is not signed by a trusted CA"
    ), line


def _gateway_with(samba, root, names, *, ca, **kw) -> GatewayProcess:
    """A gateway whose certificate for ``names`` is signed by the test CA ``ca``."""
    cert_pem, key_pem = make_self_signed(names, issuer=ca, **kw)
    (root / "gw.crt").write_bytes(cert_pem)
    (root / "gw.key").write_bytes(key_pem)
    gw = GatewayProcess(root, samba.port)
    gw.cert, gw.key = str(root / "gw.crt"), str(root / "gw.key")
    return gw.start()


@pytest.fixture
def test_ca(tmp_path):
    ca = make_ca()
    (tmp_path / "ca.crt").write_bytes(ca[0])
    return ca, str(tmp_path / "ca.crt")


def test_cafile_accepts_and_name_mismatch_refuses(samba, tmp_path, test_ca):
    ca, cafile = test_ca
    (tmp_path / "a").mkdir()
    gw = _gateway_with(samba, tmp_path / "a", ["localhost", "127.0.0.1"], ca=ca)
    try:
        ok = run("ls", "-o", f"transport=quic,cafile={cafile},username={samba.username},"
                 f"password={samba.password}", gw.url("plain"))
        assert ok.returncode == 0, ok.stderr
        # The same CA, the same server, but dialled by a name the certificate lacks.
        (tmp_path / "b").mkdir()
    finally:
        gw.stop()
    gw2 = _gateway_with(samba, tmp_path / "b", ["not-this-host.example"], ca=ca)
    try:
        proc = run("ls", "-o", f"transport=quic,cafile={cafile},username={samba.username},"
                   f"password={samba.password}", f"//localhost:{gw2.port}/plain")
    finally:
        gw2.stop()
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line == (f"quicfs: certificate of localhost:{gw2.port} is not valid for that name "
                    "(it is for not-this-host.example)"), line


def test_expired_certificate(samba, tmp_path, test_ca):
    ca, cafile = test_ca
    (tmp_path / "old").mkdir()
    gw = _gateway_with(
        samba, tmp_path / "old", ["localhost", "127.0.0.1"], ca=ca, days=1,
        not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10),
    )
    try:
        proc = run("ls", "-o", f"transport=quic,cafile={cafile},username={samba.username},"
                   f"password={samba.password}", gw.url("plain"))
    finally:
        gw.stop()
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line.startswith(f"quicfs: certificate of 127.0.0.1:{gw.port} has expired (not valid "
                           "after "), line


def test_gateway_logs_each_connection_and_stops_on_sigterm(samba, tmp_path):
    gw = GatewayProcess(tmp_path, samba.port).start()
    try:
        proc = run("ls", "-o", gw.options(samba), gw.url("plain"))
        assert proc.returncode == 0, proc.stderr
    finally:
        code = gw.stop()
    assert code == 0
    log = gw.log()
    lines = [ln for ln in log.splitlines() if "connection from 127.0.0.1:" in ln]
    assert len(lines) == 1, log
    assert "bytes up" in lines[0] and "bytes down" in lines[0] and "closed by client" in lines[0]
    assert "gateway stopping (SIGTERM)" in log


async def test_many_clients_at_once(samba, gateway):
    async def one(i: int) -> None:
        data = os.urandom(300_000 + i)
        async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
            await s.write_file(f"multi-{i}.bin", data)
            assert await s.read_file(f"multi-{i}.bin") == data

    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(one, i)


async def test_small_requests_beside_large_writes_keep_their_order(samba, gateway):
    """Small requests leave from their own task when QUIC takes them at once; large
    writes, and whatever comes behind them, go through the sender task. Mixed on one
    connection, messages still reach the stream in MessageId order, and every byte lands."""
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        transport = s.conn.transport
        order: list[int] = []
        direct = 0
        try_send, send = transport.try_send_message, transport.send_message

        def try_send_message(message: bytes) -> bool:
            nonlocal direct
            sent = try_send(message)
            if sent:
                direct += 1
                order.append(int.from_bytes(message[24:32], "little"))
            return sent

        async def send_message(message: bytes) -> None:
            order.append(int.from_bytes(message[24:32], "little"))
            await send(message)

        transport.try_send_message = try_send_message
        transport.send_message = send_message
        blobs = {i: os.urandom(300_000 + i) for i in range(4)}

        async def big(i: int) -> None:
            await s.write_file(f"mix-{i}.bin", blobs[i])

        async def small(i: int) -> None:
            for j in range(40):
                await s.conn.echo()
                assert not await s.exists(f"mix-missing-{i}-{j}")

        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(big, i)
                n.start_soon(small, i)
        queued = len(order) - direct
        assert direct > 100 and queued >= 4, (direct, queued)
        assert order == sorted(order)
        for i, data in blobs.items():
            assert sha(await s.read_file(f"mix-{i}.bin")) == sha(data)
            assert sha((samba.share_path("plain") / f"mix-{i}.bin").read_bytes()) == sha(data)


async def test_quic_connect_error_is_connecterror(samba):
    with pytest.raises(ConnectError, match="no QUIC answer"):
        async with quicfs.connect(f"//127.0.0.1:{free_udp_port()}/plain",
                                  "transport=quic,connect_timeout=0.5,username=u,password=p"):
            pass


def test_qlog_traces_written(samba, gateway, tmp_path):
    qdir = tmp_path / "qlog"
    proc = run("ls", "-o", f"{gateway.options(samba)},qlog={qdir}", gateway.url("plain"))
    assert proc.returncode == 0, proc.stderr
    traces = list(qdir.iterdir())
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    text = traces[0].read_text()
    assert "qlog_version" in text and "packet_sent" in text


async def test_negotiate_over_quic_offers_transport_security_only_when_verified(samba, gateway):
    """Over QUIC the NEGOTIATE carries SMB2_TRANSPORT_CAPABILITIES (MS-SMB2 2.2.3.1.5) when
    the certificate was verified, and not under `insecure`."""
    from quicfs.smb2.constants import NegotiateContextType

    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        assert s.conn.offer_transport_security
        assert s.conn.params.dialect == 0x0311
    insecure = (f"transport=quic,insecure,username={samba.username},"
                f"password={samba.password}")
    async with quicfs.connect(gateway.url("plain"), insecure) as s:
        assert not s.conn.offer_transport_security
        await s.listdir("")
    # Samba (behind the gateway) does not echo the context, so SMB keeps its own
    # protection even over QUIC: the sealed share is still encrypted by SMB.
    async with quicfs.connect(gateway.url("sealed"), gateway.options(samba)) as s:
        assert not s.conn.params.transport_security
        assert s.tree.encrypt
    assert NegotiateContextType.TRANSPORT_CAPABILITIES == 6


async def test_ipv6(samba, tmp_path):
    import socket as _socket

    with _socket.socket(_socket.AF_INET6, _socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    gw = GatewayProcess(tmp_path, samba.port)
    gw.host, gw.port = "::1", port
    proc = subprocess.Popen(
        [*QUICFS, "gateway", "--listen", f"[::1]:{port}", "--backend",
         f"127.0.0.1:{samba.port}", "--cert", gw.cert, "--key", gw.key],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        line = proc.stdout.readline().decode()
        assert "gateway listening" in line, line
        opts = (f"transport=quic,fingerprint={gw.fingerprint},username={samba.username},"
                f"password={samba.password}")
        async with quicfs.connect(f"//[::1]:{port}/plain", opts) as s:
            data = os.urandom(2_000_000)
            await s.write_file("v6.bin", data)
            assert await s.read_file("v6.bin") == data
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_resumed_connection_sends_no_0rtt(samba, gateway):
    """With a ticket from an earlier connection, the handshake is resumed, and NEGOTIATE
    waits for it: qh3 2.1's client fails when 0-RTT data is lost (engine.py,
    test_connect_under_loss.py)."""
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        await s.listdir("")
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as s:
        driver = s.conn.transport.driver
        assert driver.session_resumed and not driver.early_data_accepted
        data = os.urandom(100_000)
        await s.write_file("zero-rtt.bin", data)
        assert await s.read_file("zero-rtt.bin") == data


def test_gateway_with_backend_down_says_so(samba, tmp_path):
    dead = free_tcp_port()
    gw = GatewayProcess(tmp_path, dead).start()
    try:
        proc = run("ls", "-o", gw.options(samba), gw.url("plain"))
    finally:
        gw.stop()
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert f"gateway: backend 127.0.0.1:{dead} unreachable" in line, line
    assert "backend 127.0.0.1" in gw.log() and "unreachable" in gw.log()
