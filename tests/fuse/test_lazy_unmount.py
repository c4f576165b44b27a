"""``umount -l`` of a busy mount: what is open stays served until it is closed (as cifs's
does), and only then does the serving process go."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from quicfs.cli.mount import MOUNT_CHECK_SECONDS
from tests.fuse.conftest import Mount, is_mounted


def serving_pid(mountpoint: Path) -> int:
    """The detached serving process: its command line names the mount point."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--serve" in argv and os.fsencode(mountpoint) in argv:
            return int(entry.name)
    pytest.fail(f"no serving process for {mountpoint}", pytrace=False)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def tcp_mount(samba, tmp_path) -> Mount:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return Mount(mnt, samba.url("plain"),
                 f"transport=tcp,username={samba.username},password={samba.password}")


def test_lazy_unmount_serves_open_files_until_closed(tcp_mount, samba):
    first, second = os.urandom(3 << 20), os.urandom(1 << 20)
    with tcp_mount as mnt:
        pid = serving_pid(mnt)
        fd = os.open(mnt / "busy.bin", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.write(fd, first) == len(first)
            proc = subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            assert not is_mounted(mnt)
            # Past the serving process's look at the mount table: it stopped there.
            time.sleep(MOUNT_CHECK_SECONDS * 2 + 1)
            assert alive(pid)
            assert os.pread(fd, 100, 1000) == first[1000:1100]
            assert os.pwrite(fd, second, len(first)) == len(second)
            os.fsync(fd)
            assert os.pread(fd, len(second), len(first)) == second
        finally:
            os.close(fd)
        # The last user gone, the kernel ends the connection: the process follows.
        deadline = time.monotonic() + MOUNT_CHECK_SECONDS * 3 + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pid), "the serving process outlived the lazily unmounted mount"
    on_server = (samba.share_path("plain") / "busy.bin").read_bytes()
    assert hashlib.sha256(on_server).hexdigest() == hashlib.sha256(first + second).hexdigest()
