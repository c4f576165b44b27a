"""Interop with a second QUIC implementation (aioquic), and the client certificate."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import quicfs
from quicfs.cert import fingerprint, write_self_signed
from tests.support.gateway import free_udp_port

SERVER = Path(__file__).resolve().parent.parent / "support" / "aioquic_gateway.py"


class AioquicGateway:
    def __init__(self, root: Path, backend_port: int, *, request_client_cert: bool = False,
                 alpn: str = "smb", require_client_cert: str | None = None):
        files = write_self_signed("localhost", root, extra_names=["127.0.0.1"])
        self.cert, self.key, self.fingerprint = str(files.cert), str(files.key), files.fingerprint
        self.port = free_udp_port()
        self.log = root / "aioquic.log"
        args = [sys.executable, str(SERVER), "--port", str(self.port), "--backend-port",
                str(backend_port), "--cert", self.cert, "--key", self.key]
        if request_client_cert:
            args.append("--request-client-cert")
        if require_client_cert:
            args += ["--require-client-cert", require_client_cert]
        args += ["--alpn", alpn]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while b"listening" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"aioquic server did not start:\n{self.text()}", pytrace=False)
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


@pytest.fixture
def aioquic_gateway(samba, tmp_path):
    gw = AioquicGateway(tmp_path, samba.port)
    yield gw
    gw.stop()


async def test_transfers_against_aioquic(samba, aioquic_gateway):
    gw = aioquic_gateway
    opts = (f"transport=quic,fingerprint={gw.fingerprint},username={samba.username},"
            f"password={samba.password}")
    async with quicfs.connect(f"//127.0.0.1:{gw.port}/sealed", opts) as s:
        assert s.transport == "quic"
        for size in (0, 1, 64 * 1024 + 1, 12 * 1024 * 1024):
            data = os.urandom(size)
            await s.write_file(f"aio-{size}.bin", data)
            back = await s.read_file(f"aio-{size}.bin")
            assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        assert len(await s.listdir("")) >= 4


async def test_client_certificate_is_presented(samba, tmp_path):
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    server_dir.mkdir()
    client_dir.mkdir()
    gw = AioquicGateway(server_dir, samba.port, request_client_cert=True)
    try:
        mine = write_self_signed("quicfs-client", client_dir)
        opts = (f"transport=quic,fingerprint={gw.fingerprint},cert={mine.cert},"
                f"key={mine.key},username={samba.username},password={samba.password}")
        async with quicfs.connect(f"//127.0.0.1:{gw.port}/plain", opts) as s:
            await s.listdir("")
    finally:
        gw.stop()
    expected = fingerprint(Path(mine.cert).read_bytes())
    assert f"client certificate: {expected}" in gw.text().splitlines(), gw.text()


def test_alpn_refused(samba, tmp_path):
    gw = AioquicGateway(tmp_path, samba.port, alpn="h3")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "quicfs.cli.main", "ls", "-o",
             f"transport=quic,fingerprint={gw.fingerprint},username=u,password=p",
             f"//127.0.0.1:{gw.port}/plain"], capture_output=True, text=True, timeout=60)
    finally:
        gw.stop()
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"quicfs: 127.0.0.1:{gw.port} refused ALPN 'smb': it does not serve SMB over QUIC"
    ), proc.stderr
