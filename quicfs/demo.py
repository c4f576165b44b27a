"""`quicfs demo start|stop DIR`: a local Samba, our QUIC gateway in front of it with a fresh
certificate, and the share mounted over QUIC (pinned fingerprint) at DIR/mnt.

Everything stays on loopback and under DIR: smb.conf and state, the certificate, a 0600
credentials file, logs, and DIR/state.json, which `stop` reads to undo it all.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from quicfs.cert import write_self_signed
from quicfs.errors import QuicfsError
from quicfs.localsmb import SambaError, SambaServer


class DemoError(QuicfsError):
    pass


class DemoRunning(DemoError):
    """A demo is already running in that directory."""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unmount(path: Path) -> None:
    """Unmount ``path`` if it is mounted; lazily if a program still holds it."""
    from quicfs.fs.kernel import mount_entry

    if mount_entry(str(path)) is not None:
        subprocess.run(["umount", str(path)], capture_output=True)
    if mount_entry(str(path)) is not None:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


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
        raise DemoError(f"cannot start Samba: {exc}") from None
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
                raise DemoError(f"the gateway did not start; see {root / 'gateway.log'}")
            time.sleep(0.05)
        cred = root / "credentials"
        fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"username={samba.username}\npassword={samba.password}\n")
    except BaseException:
        stop_state(state)
        raise
    return LocalServers(samba, gateway.pid, port, certs.fingerprint, cred)


def start(root: Path) -> str:
    """Start everything; returns what to show the user."""
    root = root.resolve()
    state_file = root / "state.json"
    if state_file.exists():
        raise DemoRunning(f"a demo is already running in {root} (make demo-stop first)")
    mnt = root / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    # The share's Unix user must be able to walk to the share: DIR may sit under a 0700
    # home, so Samba's files live in a directory of their own under /tmp.
    samba = SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-demo-smb-")),
                        password=secrets.token_urlsafe(12))
    servers = start_servers(root, samba)
    state = servers.state()
    try:
        welcome = samba.share_path("plain") / "welcome.txt"
        welcome.write_text("Hello from quicfs: this file travelled over SMB 3.1.1 on QUIC.\n")
        os.chown(welcome, *_owner(samba.share_path("plain")))
        port = servers.port
        source = f"//127.0.0.1:{port}/plain"
        options = (f"transport=quic,fingerprint={servers.fingerprint},"
                   f"credentials={servers.credentials}")
        proc = subprocess.run([sys.executable, "-m", "quicfs.cli.mount", source, str(mnt),
                               "-o", options], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise DemoError(proc.stderr.strip() or "mount failed")
        state["mountpoint"] = str(mnt)
        state_file.write_text(json.dumps(state))
    except BaseException:
        stop_state(state)
        raise
    listing = subprocess.run(["ls", "-l", str(mnt)], capture_output=True, text=True).stdout
    return (
        f"quicfs demo: {source} mounted at {mnt}\n"
        f"  transport: QUIC (UDP 127.0.0.1:{port}, TLS 1.3, ALPN smb), certificate pinned "
        f"{servers.fingerprint}\n"
        f"  behind it: Samba smbd on TCP 127.0.0.1:{samba.port} (our gateway splices)\n\n"
        f"$ ls -l {mnt}\n{listing}\n"
        f"Try: cat {mnt}/welcome.txt; cp some-file {mnt}/\n"
        f"Stop: make demo-stop   (unmounts and stops the gateway and Samba)\n"
    )


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _kill_group(pid: object) -> None:
    if not isinstance(pid, int):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
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
        import shutil

        shutil.rmtree(samba_root, ignore_errors=True)


def stop(root: Path) -> str:
    root = root.resolve()
    state_file = root / "state.json"
    if not state_file.exists():
        return f"quicfs demo: nothing running in {root}"
    stop_state(json.loads(state_file.read_text()))
    state_file.unlink()
    return f"quicfs demo: stopped (files kept in {root})"
