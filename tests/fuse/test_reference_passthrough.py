"""xfstests/passthrough.py, the reference `xfstests/run --reference` compares quicfs
with: it must really pass data, names and owners through, or the comparison says
nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import NOBODY, is_mounted, unmount

PASSTHROUGH = Path(__file__).resolve().parents[2] / "xfstests" / "passthrough.py"


def helper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PASSTHROUGH), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def base() -> Iterator[Path]:
    # Another user must reach the mount and, as that user, the directory below it.
    path = Path(tempfile.mkdtemp(prefix="quicfs-passthrough-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_passthrough_passes_data_names_and_owners_through(base: Path) -> None:
    below, mnt = base / "below", base / "mnt"
    below.mkdir()
    mnt.mkdir()
    proc = helper(f"passthrough:{below}", str(mnt), "-o", "allow_other,noatime")
    assert proc.returncode == 0, proc.stderr
    try:
        assert is_mounted(mnt)
        data = os.urandom(3 << 20)
        (mnt / "d" / "e").mkdir(parents=True)
        (mnt / "d" / "e" / "f").write_bytes(data)
        # A renamed directory: names below it are found under the new name.
        (mnt / "d").rename(mnt / "moved")
        got = (mnt / "moved" / "e" / "f").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert (below / "moved" / "e" / "f").read_bytes() == data
        os.link(mnt / "moved" / "e" / "f", mnt / "hard")
        assert os.stat(mnt / "hard").st_nlink == 2
        (mnt / "hard").write_bytes(b"shorter")  # O_TRUNC
        assert (below / "moved" / "e" / "f").read_bytes() == b"shorter"
        os.chmod(mnt, 0o777)
        made = subprocess.run(
            [sys.executable, "-c", f"import os; os.setgid({NOBODY}); os.setuid({NOBODY}); "
             f"open('{mnt}/theirs', 'w').write('x')"], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        st = os.stat(below / "theirs")
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
        assert "noatime" in Path("/proc/self/mountinfo").read_text().split(f" {mnt} ")[1] \
            .split()[0]
    finally:
        unmount(mnt)
    assert not is_mounted(mnt)


def test_passthrough_refuses_a_source_that_is_not_a_directory(tmp_path: Path) -> None:
    proc = helper(f"passthrough:{tmp_path}/none", str(tmp_path))
    assert proc.returncode == 32
    assert proc.stderr == (f"mount.fuse.passthrough: passthrough:{tmp_path}/none is not "
                           "passthrough:DIRECTORY\n")
