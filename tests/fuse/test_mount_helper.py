"""mount(8) itself: `mount -t quicfs`, an fstab line (`mount -T`), remount read-only,
and `umount`. mount(8) looks for helpers in /sbin, so the test installs one for the
duration (as `make install` does) and removes it again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuse.conftest import is_mounted, unmount

HELPERS = [Path("/sbin/mount.quicfs"), Path("/sbin/mount.fuse.quicfs")]


@pytest.fixture
def helper():
    saved = []
    for path in HELPERS:
        link = os.readlink(path) if path.is_symlink() else None
        data = path.read_bytes() if link is None and path.exists() else None
        saved.append((path, link, data))
        path.unlink(missing_ok=True)
        path.write_text(f"#!/bin/sh\nexec {sys.executable} -m quicfs.cli.mount \"$@\"\n")
        path.chmod(0o755)
    yield HELPERS[0]
    for path, link, data in saved:
        path.unlink(missing_ok=True)
        if link is not None:
            path.symlink_to(link)
        elif data is not None:
            path.write_bytes(data)
            path.chmod(0o755)


def test_mount_t_quicfs_remount_ro_and_umount(helper, samba, gateway, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "quicfs", gateway.url("plain"), str(mnt), "-o",
                           gateway.options(samba)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    try:
        (mnt / "via-mount8.txt").write_bytes(b"mounted by mount(8)")
        proc = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        with pytest.raises(OSError) as err:
            (mnt / "refused.txt").write_bytes(b"x")
        assert err.value.errno == 30  # EROFS
        assert (mnt / "via-mount8.txt").read_bytes() == b"mounted by mount(8)"
        proc = subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        os.unlink(mnt / "via-mount8.txt")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        unmount(mnt)
    assert not is_mounted(mnt)


def test_fstab_line_with_credentials_file(helper, samba, tmp_path):
    mnt = tmp_path / "fstab-mnt"
    mnt.mkdir()
    cred = tmp_path / "cred"
    cred.write_text(f"username={samba.username}\npassword={samba.password}\n")
    cred.chmod(0o600)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{samba.url('plain')} {mnt} quicfs "
                     f"transport=tcp,credentials={cred},_netdev,nofail 0 0\n")
    proc = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    try:
        assert is_mounted(mnt)
        (mnt / "fstab.txt").write_bytes(b"from fstab")
        assert (samba.share_path("plain") / "fstab.txt").read_bytes() == b"from fstab"
        os.unlink(mnt / "fstab.txt")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        unmount(mnt)


def mount_flags(mnt: Path) -> tuple[str, str, set[str]]:
    """(type, source, per-mount flags) of the mount, from mountinfo."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mnt):
            after = fields[fields.index("-") + 1:]
            return after[0], after[1], set(fields[5].split(","))
    raise AssertionError(f"{mnt} is not mounted")


def test_mount_t_fuse_quicfs_as_xfstests_mounts(helper, samba, gateway, tmp_path):
    """xfstests (FSTYP=fuse, FUSE_SUBTYP=.quicfs): type plain "fuse", the source exactly as
    given, flags libfuse refuses set by a remount, dev,suid back for root, and a remount
    through the helper with every option of the mount repeated."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"{gateway.options(samba)},nosubtype,allow_other"
    proc = subprocess.run(["mount", "-t", "fuse.quicfs", "-o", f"{opts},nodiratime,noexec",
                           gateway.url("plain"), str(mnt)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    try:
        fstype, source, flags = mount_flags(mnt)
        assert (fstype, source) == ("fuse", gateway.url("plain"))
        assert {"rw", "nodiratime", "noexec"} <= flags
        assert not flags & {"nosuid", "nodev"}
        df = subprocess.run(["df", "-T", "-P", str(mnt)], capture_output=True, text=True)
        assert df.stdout.splitlines()[1].split()[:2] == [gateway.url("plain"), "fuse"]
        proc = subprocess.run(["mount", "-t", "fuse.quicfs", "-o", "remount,ro,strictatime",
                               "-o", opts, gateway.url("plain"), str(mnt)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        _, _, flags = mount_flags(mnt)
        assert {"ro", "nodiratime", "noexec"} <= flags and "relatime" not in flags
        with pytest.raises(OSError) as err:
            (mnt / "refused.txt").write_bytes(b"x")
        assert err.value.errno == 30  # EROFS
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        unmount(mnt)
    assert not is_mounted(mnt)


def superblock_options(mnt: Path) -> tuple[str, set[str]]:
    """(source, the superblock's options) of the mount, from mountinfo as the kernel
    writes it (a backslash is \\134 there, a space \\040)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mnt):
            after = fields[fields.index("-") + 1:]
            return after[1], set(after[2].split(","))
    raise AssertionError(f"{mnt} is not mounted")


def test_source_with_commas_adds_no_mount_option(samba, tmp_path):
    """The source becomes libfuse's fsname= option: a comma in it must not end that option
    (a directory named 'd,allow_other,ro' let every user into a root's mount), nor a
    backslash or a byte beyond ASCII change or break it."""
    from tests.fuse.conftest import Mount

    good = f"transport=tcp,username={samba.username},password={samba.password}"
    for name in ("d,allow_other,ro", "é,x\\y"):
        samba.mkdir("plain", name.replace("\\", "_"))
    mnt = tmp_path / "m"
    mnt.mkdir()
    source = samba.url("plain", "d,allow_other,ro")
    with Mount(mnt, source, good):
        shown, options = superblock_options(mnt)
        assert shown == source
        assert "allow_other" not in options and "rw" in options, options
        assert "rw" in mount_flags(mnt)[2]
    # The UNC form keeps its backslashes: \\HOST\SHARE\DIR.
    unc = source.replace("/", "\\").replace("d,allow_other,ro", "é,x_y")
    with Mount(mnt, unc, good):
        shown, options = superblock_options(mnt)
        assert shown == unc.replace("\\", "\\134")
        assert "allow_other" not in options
