"""xfstests/run stopped by SIGTERM or Ctrl-C (SIGINT) while a test runs: it ends ./check
and what the test started, unmounts, stops the gateway and smbd, removes the shares'
image and its work directory, says so in one line and exits 128 + the signal.

./check is a stand-in: it mounts TEST_DEV as xfstests does, starts a program in a session
of its own (as the tests' `su` does) inside the mount, and waits. What the runner must
undo is the runner's, so no xfstests build is needed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.fuse.conftest import is_mounted
from tools.mounts import mounted_under, unmount_under

RUN = Path(__file__).resolve().parents[2] / "xfstests" / "run"
HELPER = Path("/sbin/mount.fuse.quicfs")

CHECK = """#!/bin/bash
. "$HOST_OPTIONS"
mount -t "$FSTYP$FUSE_SUBTYP" $TEST_FS_MOUNT_OPTS "$TEST_DEV" "$TEST_DIR" || exit 1
(cd "$TEST_DIR" && exec setsid sleep 600) </dev/null &
echo "generic/001       started"
sleep 600
"""


@pytest.fixture
def helper(sbin_helpers_lock) -> Iterator[None]:
    """mount(8)'s helper for fuse.quicfs, as `make install` puts it, for the test only
    if it is not there."""
    if HELPER.exists():
        yield
        return
    dangling = os.readlink(HELPER) if HELPER.is_symlink() else None
    HELPER.unlink(missing_ok=True)  # never written through a link to somewhere else
    HELPER.write_text(f"#!/bin/sh\nexec {sys.executable} -m quicfs.cli.mount \"$@\"\n")
    HELPER.chmod(0o755)
    try:
        yield
    finally:
        HELPER.unlink(missing_ok=True)
        if dangling is not None:
            HELPER.symlink_to(dangling)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory under /tmp that the shares' Unix user can walk through (pytest's
    tmp_path is 0700). Should the runner fail the test and leave something, it goes
    afterwards all the same."""
    path = Path(tempfile.mkdtemp(prefix="qfs-stop-"))
    path.chmod(0o755)
    yield path
    for line in leftovers(f"QUICFS_STOP_TEST={path.name}", path):
        with suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    unmount_under(path)
    if not mounted_under(path):  # never a removal through a mount into the shares
        shutil.rmtree(path, ignore_errors=True)


def fake_xfstests(root: Path) -> Path:
    (root / "ltp").mkdir(parents=True)
    (root / "ltp" / "fsx").write_text("")
    (root / "check").write_text(CHECK)
    (root / "check").chmod(0o755)
    return root


def leftovers(mark: str, where: Path) -> list[str]:
    """Processes of the run: its environment, or a path of ours on their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if mark.encode() in environ or os.fsencode(where) in cmdline:
            found.append(f"{pid}: {cmdline.decode(errors='replace')}")
    return found


@pytest.mark.parametrize("signum, own_shares", [(signal.SIGTERM, False),
                                                (signal.SIGINT, True)],
                         ids=["SIGTERM-xfs-image", "SIGINT-shares-in"])
def test_stopped_run_leaves_nothing(helper, scratch, signum, own_shares):
    mark = f"QUICFS_STOP_TEST={scratch.name}"
    # Short names: smbd's sockets live below the work directory, in 108 bytes.
    work, shares, mnt = scratch / "w", scratch / "s", scratch / "mnt"
    out, err = scratch / "stdout", scratch / "stderr"
    shares.mkdir()
    env = {**os.environ, "XFSTESTS_DIR": str(fake_xfstests(scratch / "xfstests")),
           "QUICFS_XFSTESTS_WORK": str(work), "QUICFS_MNT": str(mnt),
           "QUICFS_XFSTESTS_RESULTS": str(scratch / "results"),
           "QUICFS_STOP_TEST": scratch.name}
    env.pop("QUICFS_SERVER", None)
    cmd = [str(RUN), *(["--shares-in", str(shares)] if own_shares else [])]
    # Files, not pipes: a process the run left behind could hold a pipe open forever.
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while "generic/001" not in out.read_text():
            assert proc.poll() is None, f"the run ended first:\n{out.read_text()}" \
                                        f"{err.read_text()}"
            assert time.monotonic() < deadline, "./check did not start its test in 120 s"
            time.sleep(0.1)
        assert is_mounted(mnt / "test")
        assert len(leftovers(mark, scratch)) >= 5  # run, smbd, gateway, mount, the test's
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 128 + signum
    finally:
        if proc.poll() is None:  # an assertion failed: leave the machine clean anyway
            proc.kill()
    assert "Traceback" not in out.read_text() + err.read_text()
    assert err.read_text().splitlines() == [
        f"xfstests/run: stopped by {signal.Signals(signum).name}; what it started is "
        "stopped, unmounted and removed"]
    assert str(scratch) not in Path("/proc/self/mountinfo").read_text()
    assert leftovers(mark, scratch) == []
    # The work directory (certificate, credentials, the image) and Samba's files go.
    assert list(work.iterdir()) == [] and list(shares.iterdir()) == []
