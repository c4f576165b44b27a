"""The project's own QUIC gateway, run as users run it (`quicfs gateway`), in front of the
private smbd; a fresh self-signed certificate per run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from quicfs.cert import write_self_signed


class GatewayError(RuntimeError):
    pass


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, root: Path, backend_port: int, *, name: str = "localhost") -> None:
        self.root = Path(root)
        self.backend_port = backend_port
        self.host = "127.0.0.1"
        self.port = free_udp_port()
        files = write_self_signed(name, self.root, extra_names=["127.0.0.1"])
        self.cert, self.key, self.fingerprint = str(files.cert), str(files.key), files.fingerprint
        self.log_path = self.root / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        """Start (or start again, on the same port)."""
        log = open(self.log_path, "ab")
        mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quicfs.cli.main", "gateway",
             "--listen", f"{self.host}:{self.port}",
             "--backend", f"127.0.0.1:{self.backend_port}",
             "--cert", self.cert, "--key", self.key],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            if b"gateway listening" in self.log_path.read_bytes()[mark:]:
                return self
            time.sleep(0.05)
        self.stop()
        raise GatewayError(f"gateway did not start in 15 s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the gateway dies without a word to anyone (a crash, a power cut)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, share: str, path: str = "") -> str:
        base = f"//{self.host}:{self.port}/{share}"
        return f"{base}/{path}" if path else base

    def options(self, samba, **extra: str) -> str:
        parts = ["transport=quic", f"fingerprint={self.fingerprint}",
                 f"username={samba.username}", f"password={samba.password}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return ",".join(parts)


__all__ = ["GatewayError", "GatewayProcess", "free_udp_port"]
