"""Mounts made exactly as a user makes them: `mount.quicfs` (via mount(8) where it
matters), always unmounted afterwards."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOUNT = [sys.executable, "-m", "quicfs.cli.mount"]

NOBODY = 65534


def is_mounted(path: Path) -> bool:
    text = Path("/proc/self/mountinfo").read_text()
    return any(line.split()[4] == str(path) for line in text.splitlines())


def unmount(path: Path) -> None:
    for _ in range(50):
        if not is_mounted(path):
            return
        subprocess.run(["umount", str(path)], capture_output=True)
        if is_mounted(path):
            time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Mount:
    def __init__(self, path: Path, source: str, options: str) -> None:
        self.path = path
        self.source = source
        self.options = options

    def __enter__(self) -> Path:
        proc = subprocess.run([*MOUNT, self.source, str(self.path), "-o", self.options],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.fail(f"mount.quicfs failed ({proc.returncode}): {proc.stderr}",
                        pytrace=False)
        assert is_mounted(self.path)
        return self.path

    def __exit__(self, *exc: object) -> None:
        unmount(self.path)


@pytest.fixture(params=["quic", "tcp"])
def mounted(request, samba, gateway, tmp_path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if request.param == "quic":
        source, options = gateway.url("plain"), gateway.options(samba)
    else:
        source = samba.url("plain")
        options = f"transport=tcp,username={samba.username},password={samba.password}"
    with Mount(mnt, source, options) as path:
        yield path


@pytest.fixture
def meta(samba, gateway, tmp_path) -> Iterator[tuple[Path, Path, Mount]]:
    """(a directory of the mount, the same on the server, a Mount to mount it again)."""
    # Where the other user can reach it (pytest's tmp_path is root's alone).
    mnt = Path(tempfile.mkdtemp(prefix="quicfs-meta-"))
    mnt.chmod(0o755)
    server_dir = samba.mkdir("plain", f"meta-{tmp_path.name}")
    mount = Mount(mnt, gateway.url("plain"), gateway.options(samba) + ",metadata,allow_other")
    try:
        with mount:
            yield mnt / server_dir.name, server_dir, mount
    finally:
        mnt.rmdir()


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *cmd], capture_output=True, text=True)
