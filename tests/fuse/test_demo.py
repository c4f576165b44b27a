"""`quicfs demo`: what `make demo` runs, start to stop."""

from __future__ import annotations

import subprocess
import sys

from tests.fuse.conftest import is_mounted


def test_demo_start_and_stop(tmp_path):
    root = tmp_path / "demo"
    cmd = [sys.executable, "-m", "quicfs.cli.main", "demo"]
    proc = subprocess.run([*cmd, "start", str(root)], capture_output=True, text=True,
                          timeout=120)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "transport: QUIC" in proc.stdout and "welcome.txt" in proc.stdout
        assert is_mounted(root / "mnt")
        assert (root / "mnt" / "welcome.txt").read_text().startswith("Hello from quicfs")
        again = subprocess.run([*cmd, "start", str(root)], capture_output=True, text=True)
        assert again.returncode == 1
        assert "already running" in again.stderr
    finally:
        stop = subprocess.run([*cmd, "stop", str(root)], capture_output=True, text=True,
                              timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not is_mounted(root / "mnt")
    assert not (root / "state.json").exists()
