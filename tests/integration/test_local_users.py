"""The per-user directory of control sockets and mount logs, as another user meets it:
without XDG_RUNTIME_DIR it is /tmp/quicfs-UID, which anyone may make first. The commands
run as a user of their own (setpriv; CAP_DAC_READ_SEARCH only so that it can read the
interpreter under /root), root plays the other user."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quicfs import control


@pytest.fixture
def uid():
    """A uid no one else uses in this run; its /tmp/quicfs-UID removed afterwards."""
    while True:
        uid = random.randrange(50000, 60000)
        if not os.path.lexists(f"/tmp/quicfs-{uid}"):
            break
    yield uid
    base = Path(f"/tmp/quicfs-{uid}")
    if base.is_symlink():
        base.unlink()
    shutil.rmtree(base, ignore_errors=True)


def as_user(uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
                           sys.executable, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_mount_refuses_a_directory_another_user_made(uid, tmp_path):
    """Made by another user and open to all: the mount's log, planted as a symbolic link,
    would have been written through (here it would create `victim`)."""
    base = Path(f"/tmp/quicfs-{uid}")
    (base / "quicfs").mkdir(parents=True)
    for d in (base, base / "quicfs"):
        d.chmod(0o777)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    victims = tmp_path / "victims"
    victims.mkdir()
    victims.chmod(0o777)
    log = control.socket_path(str(mnt)).with_suffix(".log").name
    (base / "quicfs" / log).symlink_to(victims / "victim")
    proc = as_user(uid, "-m", "quicfs.cli.mount", "//127.0.0.1:1/share", str(mnt),
                   "-o", "transport=tcp,username=u,password=p")
    assert proc.returncode == 32
    assert one_line(proc) == (f"mount.quicfs: {base} belongs to uid 0, not to you (uid {uid}): "
                              "remove it, or set XDG_RUNTIME_DIR")
    assert list(victims.iterdir()) == []


def test_stats_refuses_a_symlink_or_an_open_directory(uid, tmp_path):
    base = Path(f"/tmp/quicfs-{uid}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.chown(elsewhere, uid, uid)
    base.symlink_to(elsewhere)
    proc = as_user(uid, "-m", "quicfs.cli.main", "stats", str(tmp_path))
    assert proc.returncode == 2
    assert one_line(proc) == (f"quicfs: {base} is not a directory (another user's symbolic "
                              "link?); remove it, or set XDG_RUNTIME_DIR")
    assert list(elsewhere.iterdir()) == []
    base.unlink()
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    os.chown(base, uid, uid)
    proc = as_user(uid, "-m", "quicfs.cli.main", "stats", str(tmp_path))
    assert proc.returncode == 2
    assert one_line(proc) == (f"quicfs: {base} is open to other users (mode 0755); "
                              f"run chmod 700 {base}")


def test_directory_made_private(uid, tmp_path):
    """Absent, both levels are made: the user's, 0700."""
    proc = as_user(uid, "-m", "quicfs.cli.main", "stats", str(tmp_path))
    assert proc.returncode == 2
    base = Path(f"/tmp/quicfs-{uid}")
    assert one_line(proc) == (f"quicfs: {tmp_path} is not a quicfs mount (no control socket "
                              f"at {base}/quicfs/{control.socket_path(str(tmp_path)).name})")
    for d in (base, base / "quicfs"):
        st = d.lstat()
        assert (st.st_uid, oct(st.st_mode)) == (uid, oct(0o40700))
