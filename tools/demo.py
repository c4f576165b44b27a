"""`quicfs demo start|stop DIR`: a local Samba, our QUIC gateway in front of it with a fresh
certificate, and the share mounted over QUIC (pinned fingerprint) at DIR/mnt.

Everything stays on loopback and under DIR: smb.conf and state, the certificate, a 0600
credentials file, logs, and DIR/state.json, which `stop` reads to undo it all.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from quicfs.errors import QuicfsError
from tools.localsmb import SambaServer
from tools.servers import start_servers, stop_state


class DemoError(QuicfsError):
    pass


class DemoRunning(DemoError):
    """A demo is already running in that directory."""


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


def stop(root: Path) -> str:
    root = root.resolve()
    state_file = root / "state.json"
    if not state_file.exists():
        return f"quicfs demo: nothing running in {root}"
    stop_state(json.loads(state_file.read_text()))
    state_file.unlink()
    return f"quicfs demo: stopped (files kept in {root})"
