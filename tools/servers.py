"""A private smbd and our QUIC gateway in front of it, on loopback: what `quicfs demo`,
xfstests/run and bench/rtt.py serve from. ``start_servers`` returns them running;
``stop_state`` undoes them from the plain dict a caller may have written to a file."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from quicfs.cert import write_self_signed
from quicfs.errors import QuicfsError
from tools.localsmb import SambaError, SambaServer
from tools.mounts import unmount


class ServersError(QuicfsError):
    pass


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServers:
    """A private smbd and our QUIC gateway in front of it, all on loopback."""

    samba: SambaServer
    gateway_pid: int
    port: int  # the gateway's UDP port
    fingerprint: str
    credentials: Path  # 0600, the share user's name and password

    def state(self) -> dict[str, object]:
        assert self.samba.proc is not None
        return {"smbd_pid": self.samba.proc.pid, "samba_root": str(self.samba.root),
                "gateway_pid": self.gateway_pid}


def start_servers(root: Path, samba: SambaServer) -> LocalServers:
    """Start ``samba``, then the gateway with a fresh certificate under ``root`` (its
    log: root/gateway.log); on failure nothing is left running."""
    try:
        samba.start()
    except SambaError as exc:
        raise ServersError(f"cannot start Samba: {exc}") from None
    assert samba.proc is not None
    state: dict[str, object] = {"smbd_pid": samba.proc.pid, "samba_root": str(samba.root)}
    try:
        certs = write_self_signed("localhost", root / "certs", extra_names=["127.0.0.1"])
        port = _free_udp_port()
        log = open(root / "gateway.log", "ab")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "quicfs.cli.main", "gateway", "--listen",
             f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{samba.port}",
             "--cert", str(certs.cert), "--key", str(certs.key)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        state["gateway_pid"] = gateway.pid
        deadline = time.monotonic() + 15
        while b"gateway listening" not in (root / "gateway.log").read_bytes():
            if gateway.poll() is not None or time.monotonic() > deadline:
                # Its tail here: xfstests/run removes the log with its work directory.
                tail = (root / "gateway.log").read_text(errors="replace").splitlines()[-20:]
                raise ServersError("the gateway did not start (gateway.log):\n"
                                   + "\n".join(tail))
            time.sleep(0.05)
        cred = root / "credentials"
        fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"username={samba.username}\npassword={samba.password}\n")
    except BaseException:
        stop_state(state)
        raise
    return LocalServers(samba, gateway.pid, port, certs.fingerprint, cred)


def _gone(pid: int) -> bool:
    # A child of this process stays a zombie until reaped, and a zombie still answers
    # kill(pid, 0): reap it here, or every stop would wait out its whole grace time.
    with suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_group(pid: object) -> None:
    if not isinstance(pid, int):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            if _gone(pid):
                return
            time.sleep(0.1)


def stop_state(state: dict[str, object]) -> None:
    """Undo what ``state`` records: unmount, stop the gateway, stop smbd, remove its files."""
    mnt = state.get("mountpoint")
    if isinstance(mnt, str):
        unmount(Path(mnt))
    _kill_group(state.get("gateway_pid"))
    _kill_group(state.get("smbd_pid"))
    samba_root = state.get("samba_root")
    if isinstance(samba_root, str) and samba_root.startswith(tempfile.gettempdir()):
        shutil.rmtree(samba_root, ignore_errors=True)
