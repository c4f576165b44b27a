"""Mount option ``metadata``: Linux owners, modes and special files kept in the files'
EAs ($LXUID, $LXGID, $LXMOD, $LXDEV as WSL lays them out), checked by the kernel
(default_permissions), surviving a remount, and seen by the server as plain EAs."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tests.fuse.conftest import NOBODY, Mount, as_nobody


def test_modes_and_owners_persist_and_are_checked(meta) -> None:
    mnt, server_dir, mount = meta
    f = mnt / "secret"
    f.write_bytes(b"for root only\n")
    os.chmod(f, 0o600)
    os.chown(f, 1234, 5678)
    pub = mnt / "public"
    pub.write_bytes(b"for all\n")
    os.chmod(pub, 0o644)
    st = os.stat(f)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 1234, 5678)
    # The kernel checks them: another user may read the public file, not the secret one.
    assert as_nobody("cat", str(pub)).stdout == "for all\n"
    r = as_nobody("cat", str(f))
    assert r.returncode == 1 and "Permission denied" in r.stderr
    r = as_nobody("sh", "-c", f"echo x >> {pub}")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # On the server they are EAs (Samba keeps an EA as a user.* xattr).
    assert os.getxattr(server_dir / "secret", "user.$LXMOD") == \
        (stat.S_IFREG | 0o600).to_bytes(4, "little")
    assert os.getxattr(server_dir / "secret", "user.$LXUID") == (1234).to_bytes(4, "little")
    # ... but not xattrs of the file as seen through the mount.
    assert not any(n.lower().startswith("user.$lx") for n in os.listxattr(f))
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.$LXUID", b"\0\0\0\0")
    assert e.value.errno == errno.EPERM
    mount.__exit__()
    with mount:
        st = os.stat(f)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 1234, 5678)
        assert stat.S_IMODE(os.stat(pub).st_mode) == 0o644
        # A listing carries them too (readdirplus hands the kernel each entry's).
        out = subprocess.run(["ls", "-ln", str(mnt)], capture_output=True, text=True,
                             check=True).stdout
        assert any(line.startswith("-rw------- 1 1234 5678 ") for line in out.splitlines())


def test_a_listing_shows_each_files_own(meta) -> None:
    """More files than one window of EA reads (LX_WINDOW), each with its own owner and
    mode: a fresh mount's listing shows every one right, the empty ones (which might be
    FIFOs: read with the listing) and those with data (the kernel asks later)."""
    mnt, _, mount = meta
    want = {}
    for i in range(80):
        f = mnt / f"f{i:02d}"
        f.write_bytes(b"data" * (i % 2))
        os.chown(f, 2000 + i, 3000 + i)
        os.chmod(f, 0o600 + i % 64)
        want[f.name] = (stat.S_IFREG | 0o600 + i % 64, 2000 + i, 3000 + i)
    mount.__exit__()
    with mount:
        got = {}
        for e in os.scandir(mnt):
            st = e.stat(follow_symlinks=False)
            got[e.name] = (st.st_mode, st.st_uid, st.st_gid)
        assert got == want


def test_another_clients_chmod_shows_in_a_listing(meta, samba, gateway, tmp_path) -> None:
    """What a listing knows of a file's EAs holds only while the file's ChangeTime does:
    a chmod or chown made through another mount shows here after actimeo."""
    mnt, server_dir, _ = meta
    (mnt / "f").write_bytes(b"")
    os.chmod(mnt / "f", 0o640)
    assert [(e.name, stat.S_IMODE(e.stat().st_mode)) for e in os.scandir(mnt)] == \
        [("f", 0o640)]
    other = tmp_path / "other"
    other.mkdir()
    with Mount(other, gateway.url("plain"), gateway.options(samba) + ",metadata"):
        os.chmod(other / server_dir.name / "f", 0o604)
        os.chown(other / server_dir.name / "f", 77, 88)
    time.sleep(1.1)  # actimeo
    assert [(e.name, stat.S_IMODE(e.stat().st_mode), e.stat().st_uid)
            for e in os.scandir(mnt)] == [("f", 0o604, 77)]


def test_chmod_gives_back_what_a_read_only_attribute_took(meta, samba) -> None:
    mnt, server_dir, _ = meta
    (mnt / "ro").write_bytes(b"old")
    r = samba.smbclient("plain", f"setmode {server_dir.name}/ro +r")
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(1.1)  # past actimeo: the kernel asks again
    assert stat.S_IMODE(os.stat(mnt / "ro").st_mode) & 0o222 == 0
    os.chmod(mnt / "ro", 0o644)
    assert stat.S_IMODE(os.stat(mnt / "ro").st_mode) == 0o644
    (mnt / "ro").write_bytes(b"new")
    assert (mnt / "ro").read_bytes() == b"new"


def test_new_files_belong_to_their_creator(meta) -> None:
    mnt, _, _ = meta
    os.chmod(mnt, 0o1777)  # world-writable, sticky: like /tmp
    r = as_nobody("sh", "-c", f"umask 027 && echo mine > {mnt}/n && mkdir {mnt}/d"
                  f" && ln -s n {mnt}/l")
    assert r.returncode == 0, r.stderr
    for name, mode in (("n", stat.S_IFREG | 0o640), ("d", stat.S_IFDIR | 0o750)):
        st = os.stat(mnt / name)
        assert (st.st_mode, st.st_uid, st.st_gid) == (mode, NOBODY, NOBODY), name
    assert os.lstat(mnt / "l").st_uid == NOBODY
    # Sticky directory: root's file cannot be removed by nobody, nobody's own can.
    (mnt / "roots").write_bytes(b"")
    r = as_nobody("rm", "-f", str(mnt / "roots"))
    assert r.returncode == 1 and "Operation not permitted" in r.stderr
    assert as_nobody("rm", str(mnt / "n")).returncode == 0
    assert not (mnt / "n").exists()


def test_set_group_id_directories_hand_down_their_group(meta) -> None:
    mnt, _, _ = meta
    d = mnt / "shared"
    d.mkdir()
    os.chown(d, 0, 4321)
    os.chmod(d, 0o2775)
    (d / "f").write_bytes(b"")
    (d / "sub").mkdir()
    assert os.stat(d / "f").st_gid == 4321
    sub = os.stat(d / "sub")
    assert sub.st_gid == 4321 and sub.st_mode & stat.S_ISGID


def test_fifos_and_device_nodes(meta) -> None:
    mnt, server_dir, mount = meta
    with pytest.raises(OSError) as e:  # a mount not told dev keeps no device node
        os.mknod(mnt / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert e.value.errno == errno.EPERM
    mount.__exit__()
    mount.options += ",dev"
    mount.__enter__()
    os.mkfifo(mnt / "pipe", 0o600)
    os.mknod(mnt / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert stat.S_ISFIFO(os.stat(mnt / "pipe").st_mode)
    # The server holds empty regular files.
    assert (server_dir / "pipe").is_file() and (server_dir / "pipe").stat().st_size == 0
    # A FIFO through the mount is the kernel's own: bytes pass from writer to reader.
    writer = subprocess.Popen(["sh", "-c", f"printf through > {mnt}/pipe"])
    assert (mnt / "pipe").read_bytes() == b"through"
    assert writer.wait(timeout=10) == 0
    mount.__exit__()
    with mount:
        st = os.stat(mnt / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert stat.S_IMODE(st.st_mode) == 0o666 & ~_umask()
        with open(mnt / "null", "wb") as f:  # it is /dev/null
            f.write(b"gone")
        assert (mnt / "null").read_bytes() == b""
        os.rename(mnt / "pipe", mnt / "pipe2")
        assert stat.S_ISFIFO(os.stat(mnt / "pipe2").st_mode)


def _plant(path, mode: int, uid: int | None = None, rdev: tuple[int, int] | None = None
           ) -> None:
    """EAs set on the server's file, as any SMB writer (or the server) may set them."""
    os.setxattr(path, "user.$LXMOD", mode.to_bytes(4, "little"))
    if uid is not None:
        os.setxattr(path, "user.$LXUID", uid.to_bytes(4, "little"))
        os.setxattr(path, "user.$LXGID", uid.to_bytes(4, "little"))
    if rdev is not None:
        os.setxattr(path, "user.$LXDEV", (rdev[0] | rdev[1] << 32).to_bytes(8, "little"))


#: Opens its argument for writing: exit 0 if it could.
OPENS_FOR_WRITING = "import sys; open(sys.argv[1], 'wb', buffering=0).close()"


def test_planted_setuid_programs_and_devices_need_suid_and_dev(meta) -> None:
    """A setuid-root copy of id and a world-writable node of a root-only device
    (/dev/kmsg, 1:11) planted on the server: on root's mount with metadata and
    allow_other, another user runs id as themselves and finds a plain empty file, as
    the mount is nosuid,nodev and shows neither. Told allow_suid,allow_dev (names that
    pass through mount(8)), the EAs are trusted again: euid 0, the device opens."""
    mnt, server_dir, mount = meta
    shutil.copy("/usr/bin/id", server_dir / "id")
    (server_dir / "id").chmod(0o755)
    _plant(server_dir / "id", stat.S_IFREG | 0o4755, uid=0)
    (server_dir / "kmsg").write_bytes(b"")
    (server_dir / "kmsg").chmod(0o666)
    _plant(server_dir / "kmsg", stat.S_IFCHR | 0o666, uid=0, rdev=(1, 11))
    assert as_nobody(sys.executable, "-c", OPENS_FOR_WRITING, "/dev/kmsg").returncode != 0
    assert {"nosuid", "nodev"} <= _flags(mount.path)
    r = as_nobody(str(mnt / "id"), "-u")
    assert (r.returncode, r.stdout) == (0, f"{NOBODY}\n")
    st = os.stat(mnt / "id")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    st = os.stat(mnt / "kmsg")
    assert stat.S_ISREG(st.st_mode) and st.st_rdev == 0
    mount.__exit__()
    mount.options += ",allow_suid,allow_dev"
    with mount:
        assert not {"nosuid", "nodev"} & _flags(mount.path)
        r = as_nobody(str(mnt / "id"), "-u")
        assert (r.returncode, r.stdout) == (0, "0\n")
        st = os.stat(mnt / "kmsg")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 11)
        assert as_nobody(sys.executable, "-c", OPENS_FOR_WRITING,
                         str(mnt / "kmsg")).returncode == 0


def _flags(mountpoint) -> set[str]:
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == str(mountpoint):
            return set(fields[5].split(","))
    raise AssertionError(f"{mountpoint} is not mounted")


@pytest.mark.quiet  # within actimeo
def test_create_over_a_file_made_elsewhere_keeps_its_owner(meta) -> None:
    """A create(2) that finds the name taken (made by another client since our lookup)
    opens that file: its owner and mode stay, nothing of ours replaces them."""
    mnt, server_dir, _ = meta
    assert not (mnt / "race").exists()  # the kernel now holds "no such name" (actimeo)
    (server_dir / "race").write_bytes(b"theirs")
    (server_dir / "race").chmod(0o666)  # for smbd's user to write
    os.setxattr(server_dir / "race", "user.$LXUID", (4242).to_bytes(4, "little"))
    os.setxattr(server_dir / "race", "user.$LXMOD",
                (stat.S_IFREG | 0o604).to_bytes(4, "little"))
    start = time.monotonic()
    fd = os.open(mnt / "race", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    assert time.monotonic() - start < 1.0, "too slow to have gone through create"
    os.write(fd, b"ours")
    os.close(fd)
    st = os.stat(mnt / "race")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (4242, 0o604)
    assert (mnt / "race").read_bytes() == b"ours"


def test_without_metadata_no_special_files(mounted) -> None:
    with pytest.raises(OSError) as e:
        os.mkfifo(mounted / "pipe")
    assert e.value.errno == errno.EPERM
    assert not (mounted / "pipe").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
