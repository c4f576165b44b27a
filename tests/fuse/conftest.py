"""Mounts made exactly as a user makes them: `mount.quicfs` (via mount(8) where it
matters), always unmounted afterwards."""

from __future__ import annotations

import re
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


def dir_of_test(item: pytest.Item) -> str:
    """The name of a test's own directory in its module's shared mount: its id, as a
    file name (``test_x[quic]`` is ``test_x-quic``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", item.name.replace("]", ""))


def make_test_dirs(request: pytest.FixtureRequest, samba, fixture: str) -> None:
    """On the server's disk, before the mount is made, a directory for each test of
    this module that takes ``fixture``: the mount's first listing of its root then
    holds them all. (One made later behind Samba's back would not show through a
    listing of the root taken under a directory lease; one made through the mount would
    be known empty for actimeo, hiding what a test then puts there from the server's
    side.)"""
    for item in request.session.items:
        if item.path == request.path and fixture in getattr(item, "fixturenames", ()):
            samba.mkdir("plain", dir_of_test(item))


def source_and_options(transport: str, samba, gateway) -> tuple[str, str]:
    """What mounts the ``plain`` share over ``transport`` (quic: through the gateway)."""
    if transport == "quic":
        return gateway.url("plain"), gateway.options(samba)
    return (samba.url("plain"),
            f"transport=tcp,username={samba.username},password={samba.password}")


class SharedMount(Mount):
    """A module's mount, made once and kept for its tests; mounted again before a test
    if one before it unmounted it (a remount test) or it died (a failed test)."""

    def ensure(self) -> Path:
        if not is_mounted(self.path):
            unmount(self.path)  # a dead FUSE process leaves its mount point behind
            self.__enter__()
        return self.path


@pytest.fixture(scope="module", params=["quic", "tcp"])
def shared_mount(request, samba, gateway, tmp_path_factory) -> Iterator[SharedMount]:
    """One mount of the share per transport for this module's tests (a mount costs a
    second or two): each test works in a directory of its own (``mounted``)."""
    make_test_dirs(request, samba, "mounted")
    mount = SharedMount(tmp_path_factory.mktemp(f"mnt-{request.param}"),
                        *source_and_options(request.param, samba, gateway))
    with mount:
        yield mount


@pytest.fixture
def mounted(shared_mount: SharedMount, request) -> Path:
    """This test's own directory of its module's mount (over QUIC, then over TCP); what
    it holds on the server's disk is ``server_dir``."""
    return shared_mount.ensure() / dir_of_test(request.node)


@pytest.fixture
def server_dir(mounted: Path, samba) -> Path:
    """``mounted`` as the server holds it on its disk (``samba.smbclient`` reaches it as
    ``-D server_dir.name``)."""
    return samba.share_path("plain") / mounted.name


@pytest.fixture(params=["quic", "tcp"])
def fresh_mount(request, samba, gateway, tmp_path) -> Iterator[Path]:
    """A mount of the share's root for this test alone (over QUIC, then over TCP), for
    tests that count what their mount sends or holds: another test's parked handles and
    leases would be counted with theirs."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Mount(mnt, *source_and_options(request.param, samba, gateway)) as path:
        yield path


@pytest.fixture(scope="module")
def meta_mount(request, samba, gateway) -> Iterator[SharedMount]:
    """One mount with ``metadata,allow_other`` for this module's tests, at a mount point
    another user can reach (pytest's tmp_path is root's alone)."""
    make_test_dirs(request, samba, "meta")
    mnt = Path(tempfile.mkdtemp(prefix="quicfs-meta-"))
    mnt.chmod(0o755)
    mount = SharedMount(mnt, gateway.url("plain"),
                        gateway.options(samba) + ",metadata,allow_other")
    try:
        with mount:
            yield mount
    finally:
        mnt.rmdir()


@pytest.fixture
def meta(meta_mount: SharedMount, samba, request) -> Iterator[tuple[Path, Path, Mount]]:
    """(this test's directory of the metadata mount, the same on the server, the Mount
    to unmount and mount again: with its options as they were once the test is over)."""
    name = dir_of_test(request.node)
    options = meta_mount.options
    try:
        yield meta_mount.ensure() / name, samba.share_path("plain") / name, meta_mount
    finally:
        if meta_mount.options != options:  # a test mounted it with options of its own
            meta_mount.options = options
            unmount(meta_mount.path)


def mount_point(path: Path) -> Path:
    """The mount point above ``path`` (a mount's control socket is named by it), found
    in the mount table: a stat of the mount would send requests of its own."""
    path = Path(path)
    while not is_mounted(path):
        path = path.parent
    return path


def parked_handles_closed(path: Path, within: float) -> bool:
    """Whether the mount holding ``path`` has closed every handle it parked after a
    close (closetimeo) within ``within`` seconds: polled, not slept for."""
    from quicfs import control

    deadline = time.monotonic() + within
    while control.ask(str(mount_point(path)), "stats")["parked_handles"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *cmd], capture_output=True, text=True)
