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
def helper(sbin_helpers_lock):
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
        # Root's mount too: setuid bits and device nodes only when told (mountflags.py).
        assert {"nosuid", "nodev"} <= mount_flags(mnt)[2]
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
    given, flags libfuse refuses set by a remount, dev,suid asked for as allow_dev and
    allow_suid (mount(8) drops dev and suid), and a remount through the helper with every
    option of the mount repeated."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"{gateway.options(samba)},nosubtype,allow_other,allow_suid,allow_dev"
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
        assert not flags & {"nosuid", "nodev"}
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


def test_mount_point_beyond_ascii(samba, tmp_path):
    """A UTF-8 name beyond ASCII mounts and stays mounted (the serving process compared
    mountinfo's bytes decoded as Latin-1 with the name, thought the mount gone and stopped
    within 2 s); a name that is not UTF-8 (which every reader of mountinfo as text would
    fail on) and a uid beyond uid_t are one-line usage errors."""
    import time

    from tests.fuse.conftest import MOUNT, Mount

    good = f"transport=tcp,username={samba.username},password={samba.password}"
    (samba.share_path("plain") / "beyond.txt").write_bytes(b"beyond ascii\n")
    mnt = tmp_path / "mnté"
    mnt.mkdir()
    with Mount(mnt, samba.url("plain"), good):
        time.sleep(3)  # past the serving process's look at the mount table (2 s)
        assert is_mounted(mnt)
        assert (mnt / "beyond.txt").read_bytes() == b"beyond ascii\n"
        proc = subprocess.run([*MOUNT, samba.url("plain"), str(mnt), "-o", good],
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (32, f"mount.quicfs: {mnt} is already mounted\n")
        stats = subprocess.run([sys.executable, "-m", "quicfs.cli.main", "stats", str(mnt)],
                               capture_output=True, text=True, timeout=60)
        assert stats.returncode == 0 and stats.stdout.startswith(f"{mnt}: "), stats.stderr
    bad = os.fsencode(tmp_path) + b"/m\xff"
    os.mkdir(bad)
    proc = subprocess.run([*(os.fsencode(a) for a in MOUNT), os.fsencode(samba.url("plain")),
                           bad, b"-o", os.fsencode(good)], capture_output=True, timeout=60)
    assert (proc.returncode, proc.stderr.decode()) == (
        1, f"mount.quicfs: mount point {tmp_path}/m\\xff: its name is not UTF-8\n")
    for opts, message in (("uid=4294967296", "bad value for option uid: '4294967296' "
                                             "(expected a number from 0 to 4294967294 or a "
                                             "known name)"),
                          (f"cert={mnt},key={mnt}", f"cert={mnt}: Is a directory")):
        proc = subprocess.run([*MOUNT, samba.url("plain"), str(mnt), "-o", f"{good},{opts}"],
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (1, f"mount.quicfs: {message}\n")


@pytest.mark.parametrize("argv", [[], ["//h/s"], ["//h/s", "/mnt", "--bogus"]],
                         ids=["nothing", "no mount point", "unknown flag"])
def test_a_refused_command_line_exits_1_as_mount_8_wants(argv):
    """mount(8) keeps exit status 2 for its own errors; a helper's bad invocation is 1,
    one usage and one line naming what is wrong."""
    proc = subprocess.run([sys.executable, "-m", "quicfs.cli.mount", *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("usage: mount.quicfs")
    assert proc.stderr.splitlines()[-1].startswith("mount.quicfs: ")
