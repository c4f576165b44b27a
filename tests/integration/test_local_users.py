"""What other local users can do to quicfs: read a password from the command line or a
process's memory; make /tmp/quicfs-UID (the per-user directory of control sockets and
mount logs without XDG_RUNTIME_DIR) first. The commands run as a user of their own
(setpriv; CAP_DAC_READ_SEARCH only so that it can read the interpreter under /root), root
plays the other user."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
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


def user_command(uid: int, *args: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
            sys.executable, *args]


USER_ENV = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}


def as_user(uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(user_command(uid, *args), capture_output=True, text=True,
                          timeout=60, env=USER_ENV)


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


SECRET = "Not-For-Ps-7"


def processes_naming(text: str) -> dict[int, bytes]:
    """pid -> command line of every process whose command line holds ``text``."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found[int(entry)] = cmdline
    return found


@pytest.mark.parametrize("command", ["ls", "get", "put", "mount", "mount -f"])
def test_password_leaves_the_command_line_and_memory_is_closed(uid, tmp_path, command):
    """Run as a user of its own against a server that accepts and never answers (so the
    command stays): every quicfs process's command line has no password (the rest of
    its options stay), and none is dumpable (/proc/PID/status then belongs to root)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    url = f"//127.0.0.1:{silent.getsockname()[1]}/share"
    opts = f"transport=tcp,username=u,password={SECRET},,x,connect_timeout=20"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    local = tmp_path / "local"
    local.write_bytes(b"x")
    local.chmod(0o644)
    args = {"ls": ["-m", "quicfs.cli.main", "ls", "-o", opts, url],
            "put": ["-m", "quicfs.cli.main", "put", "-o", opts, str(local), f"{url}/f"],
            "get": ["-m", "quicfs.cli.main", "get", f"-o{opts}", f"{url}/f", str(mnt)],
            "mount": ["-m", "quicfs.cli.mount", url, str(mnt), "-o", opts],
            "mount -f": ["-m", "quicfs.cli.mount", url, str(mnt), "-o", opts, "-f"]}[command]
    proc = subprocess.Popen(user_command(uid, *args), env=USER_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        conn, _ = silent.accept()  # the command is past its start-up: it connects
        with conn:
            found = processes_naming(url)
            assert len(found) == (2 if command == "mount" else 1), found
            for pid, cmdline in found.items():
                assert SECRET.encode() not in cmdline, cmdline
                # (the detached serving process gets its options on a pipe)
                assert b"--serve" in cmdline or b"transport=tcp,username=u," in cmdline
                assert os.stat(f"/proc/{pid}/status").st_uid == 0, cmdline  # not dumpable
    finally:
        silent.close()
        for pid in processes_naming(url):
            os.kill(pid, 9)
        proc.wait(timeout=30)


def test_foreground_mount_keeps_no_password_in_ps(samba, tmp_path):
    """mount.quicfs -f serves for the whole mount: its command line, seen from outside,
    has the rest of its options and no password."""
    from tests.fuse.conftest import MOUNT, is_mounted, unmount

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"transport=tcp,username={samba.username},password={samba.password}"
    proc = subprocess.Popen([*MOUNT, samba.url("plain"), str(mnt), "-o", opts, "-f"],
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if is_mounted(mnt) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert is_mounted(mnt), proc.stderr and proc.stderr.read()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert samba.password.encode() not in cmdline
        assert f"-o\0transport=tcp,username={samba.username}\0-f".encode() in cmdline
        assert os.listdir(mnt) is not None
    finally:
        unmount(mnt)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == ""  # not a terminal: no warning


def test_warning_for_a_password_typed_at_a_terminal(samba):
    """A person at a terminal is told, in one line, that password= was visible."""
    import pty

    main_fd, term = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "quicfs.cli.main", "ls", "-o",
                               f"transport=tcp,username={samba.username},"
                               f"password={samba.password}", samba.url("plain")],
                              stderr=term, stdout=subprocess.DEVNULL, timeout=60)
        os.close(term)
        said = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            said += chunk
    finally:
        os.close(main_fd)
    assert proc.returncode == 0
    assert said.decode().splitlines() == [
        "quicfs: warning: password= on a command line is visible to other users while the "
        "command starts; use credentials=FILE or the PASSWD environment variable"]
