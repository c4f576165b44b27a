"""A real FUSE mount of the share, over QUIC through the gateway and over TCP."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import threading
import time

import pytest

from tests.fuse.conftest import MOUNT, Mount, is_mounted, parked_handles_closed


def digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_tree(root, count: int, seed: int = 1) -> dict[str, bytes]:
    import random

    rng = random.Random(seed)
    files = {}
    for i in range(count):
        d = f"d{i % 17}/e{i % 5}"
        size = rng.choice([0, 1, 100, 4096, 65537, 300_000])
        files[f"{d}/f{i}.bin"] = rng.randbytes(size)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


@pytest.mark.slow
def test_tree_workload_matches_local(mounted, server_dir, tmp_path):
    """A tree of a thousand files in 102 directories, sizes from empty to 300 KB, copied
    in and read back, then renamed, truncated, appended to and removed in part on both
    sides: the mount's tree and a local one end the same, file by file."""
    local = tmp_path / "local"
    local.mkdir()
    work = mounted / "tree"
    work.mkdir()
    files = make_tree(local, 1000)
    # Copy in, read back by checksum.
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local / rel, work / rel)
    for rel, data in files.items():
        assert digest(work / rel) == hashlib.sha256(data).hexdigest(), rel
    # The server holds the same bytes.
    server = server_dir / "tree"
    for rel, data in list(files.items())[:50]:
        assert (server / rel).read_bytes() == data
    # Same operations on both sides: rename, truncate, append, delete, rmdir.
    for side in (local, work):
        os.rename(side / "d1", side / "d1-renamed")
        with open(side / "d2/e2/f2.bin", "r+b") as f:
            f.truncate(10)
        with open(side / "d3/e3/f3.bin", "ab") as f:
            f.write(b"appended")
        os.unlink(side / "d4/e4/f4.bin")
        shutil.rmtree(side / "d5")
    def listing(root):
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            for n in filenames:
                p = os.path.join(dirpath, n)
                out[os.path.join(rel, n)] = digest(p)
            for n in dirnames:
                out[os.path.join(rel, n) + "/"] = "dir"
        return out
    assert listing(work) == listing(local)
    shutil.rmtree(work)
    assert not (server_dir / "tree").exists()


def test_dot_entries_stat_and_statfs(mounted):
    (mounted / "sub").mkdir()
    names = os.listdir(mounted)  # listdir hides . and ..; readdir must still send them
    assert "sub" in names
    out = subprocess.run(["ls", "-a", str(mounted / "sub")], capture_output=True, text=True)
    assert out.stdout.split() == [".", ".."]
    st = os.stat(mounted / "sub")
    assert st.st_nlink >= 2 and (st.st_mode & 0o170000) == 0o040000
    vfs = os.statvfs(mounted)
    assert vfs.f_blocks > 0 and vfs.f_bsize > 0
    os.rmdir(mounted / "sub")


def test_large_file_and_concurrent_readers(mounted, tmp_path):
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    shutil.copyfile(src, mounted / "big.bin")
    want = digest(src)
    results = []

    def reader():
        results.append(digest(mounted / "big.bin"))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want, want]
    os.unlink(mounted / "big.bin")


def test_errors_map_to_errno(mounted):
    import errno

    import pytest

    with pytest.raises(FileNotFoundError):
        open(mounted / "nope.txt", "rb")
    (mounted / "full").mkdir()
    (mounted / "full" / "x").write_bytes(b"x")
    with pytest.raises(OSError) as err:
        os.rmdir(mounted / "full")
    assert err.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(mounted / "full")
    with pytest.raises(FileExistsError):
        os.open(mounted / "full" / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    shutil.rmtree(mounted / "full")


def run_mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MOUNT, *args], capture_output=True, text=True, timeout=60)


def test_mount_bad_inputs(samba, gateway, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    good = f"transport=tcp,username={samba.username},password={samba.password}"
    proc = run_mount(samba.url("plain"), str(tmp_path / "missing"), "-o", good)
    assert proc.returncode == 32
    assert proc.stderr.strip() == f"mount.quicfs: mount point {tmp_path / 'missing'} does not exist"
    proc = run_mount(samba.url("plain"), str(mnt), "-o", good + ",bogus")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "mount.quicfs: unknown option 'bogus'"
    proc = run_mount(samba.url("plain"), str(mnt), "-o",
                     f"transport=tcp,username={samba.username},password=wrong")
    assert proc.returncode == 32
    assert proc.stderr.strip() == (
        f"mount.quicfs: logon failure for user '{samba.username}' on "
        f"//{samba.host}:{samba.port}: wrong user name or password")
    proc = run_mount(gateway.url("plain"), str(mnt), "-o",
                     f"transport=quic,fingerprint=sha256:{'00' * 32},username=u,password=p")
    assert proc.returncode == 32
    assert "does not match the pinned fingerprint" in proc.stderr
    assert not is_mounted(mnt)
    # Already mounted.
    with Mount(mnt, samba.url("plain"), good):
        proc = run_mount(samba.url("plain"), str(mnt), "-o", good)
        assert proc.returncode == 32
        assert proc.stderr.strip() == f"mount.quicfs: {mnt} is already mounted"
    assert not is_mounted(mnt)


def test_mount_of_a_directory_of_the_share(samba, tmp_path):
    """//host/share/PATH mounts that directory (mount.cifs's prefix path), nothing above."""
    top = samba.mkdir("plain", f"top-{tmp_path.name}")
    samba.mkdir("plain", f"{top.name}/inner")
    (top / "inner" / "deep.txt").write_bytes(b"deep\n")
    (top / "outer.txt").write_bytes(b"outer\n")
    mnt = tmp_path / "m"
    mnt.mkdir()
    good = f"transport=tcp,username={samba.username},password={samba.password}"
    with Mount(mnt, samba.url("plain", f"{top.name}/inner"), good):
        assert sorted(os.listdir(mnt)) == ["deep.txt"]
        assert (mnt / "deep.txt").read_bytes() == b"deep\n"
        assert os.stat(mnt / "..").st_ino != os.stat(mnt).st_ino  # the host's parent
        (mnt / "sub").mkdir()
        (mnt / "sub" / "new.txt").write_bytes(b"new\n")
        os.rename(mnt / "sub" / "new.txt", mnt / "moved.txt")
        os.unlink(mnt / "deep.txt")
    assert sorted(p.name for p in (top / "inner").iterdir()) == ["moved.txt", "sub"]
    assert (top / "inner" / "moved.txt").read_bytes() == b"new\n"
    assert (top / "outer.txt").read_bytes() == b"outer\n"
    for path, message in ((f"{top.name}/missing", "No such file or directory"),
                          (f"{top.name}/outer.txt", "Not a directory")):
        proc = run_mount(samba.url("plain", path), str(mnt), "-o", good)
        assert proc.returncode == 32, proc.stderr
        assert proc.stderr.startswith(f"mount.quicfs: //{samba.host}:{samba.port}/plain/{path}: ")
        assert message.lower() in proc.stderr.lower(), proc.stderr
        assert not is_mounted(mnt)


@pytest.mark.serial  # reads every process's command line: other tests' hold the password
def test_password_not_in_ps(samba, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    secret_opts = f"transport=tcp,username={samba.username},password={samba.password}"
    with Mount(mnt, samba.url("plain"), secret_opts):
        ps = subprocess.run(["ps", "axww", "-o", "args"], capture_output=True, text=True)
        assert "quicfs.cli.mount" in ps.stdout
        assert samba.password not in ps.stdout


def test_hard_links_and_symlinks(mounted, server_dir):
    (mounted / "orig.txt").write_bytes(b"one file, two names")
    os.link(mounted / "orig.txt", mounted / "alias.txt")
    a, b = os.stat(mounted / "orig.txt"), os.stat(mounted / "alias.txt")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    import time

    time.sleep(1.2)  # past actimeo: the kernel looks both names up afresh
    a, b = os.stat(mounted / "orig.txt"), os.stat(mounted / "alias.txt")
    assert a.st_ino == b.st_ino
    with open(mounted / "alias.txt", "ab") as f:
        f.write(b"!")
    assert (mounted / "orig.txt").read_bytes() == b"one file, two names!"
    os.symlink("orig.txt", mounted / "sym")
    assert os.readlink(mounted / "sym") == "orig.txt"
    assert (mounted / "sym").is_symlink()
    assert (mounted / "sym").read_bytes() == b"one file, two names!"
    # Stored the way cifs.ko's mfsymlinks stores it: a 1067-byte XSym file on the server.
    raw = (server_dir / "sym").read_bytes()
    assert len(raw) == 1067 and raw.startswith(b"XSym\n0008\n")
    for name in ("orig.txt", "alias.txt", "sym"):
        os.unlink(mounted / name)


def test_eight_writers_two_readers(mounted, tmp_path):
    src = tmp_path / "shared.bin"
    src.write_bytes(os.urandom(8 * 1024 * 1024))
    shutil.copyfile(src, mounted / "shared.bin")
    want_shared = digest(src)
    payloads = {i: os.urandom(3 * 1024 * 1024 + i) for i in range(8)}
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with open(mounted / f"w{i}.bin", "wb") as f:
                data = payloads[i]
                for pos in range(0, len(data), 100_000):
                    f.write(data[pos : pos + 100_000])
        except BaseException as exc:
            errors.append(exc)

    def reader(i: int) -> None:
        try:
            results[f"r{i}"] = digest(mounted / "shared.bin")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == {"r0": want_shared, "r1": want_shared}
    for i, data in payloads.items():
        assert digest(mounted / f"w{i}.bin") == hashlib.sha256(data).hexdigest()
        os.unlink(mounted / f"w{i}.bin")
    os.unlink(mounted / "shared.bin")


@pytest.mark.slow
# Over TCP only: the mount's write gathering and page cache are the same over either
# transport, and QUIC's stream and flow control at volume have the 200 MiB transfers of
# tests/integration/test_quic.py; over QUIC this took 27 s of the suite.
@pytest.mark.parametrize("shared_mount", ["tcp"], indirect=True)
def test_one_gib_write_and_read_back(mounted, tmp_path):
    block = os.urandom(1 << 20)
    want = hashlib.sha256()
    with open(mounted / "gib.bin", "wb") as f:
        for i in range(1024):
            piece = bytes([i % 256]) + block[1:]
            want.update(piece)
            f.write(piece)
    assert os.stat(mounted / "gib.bin").st_size == 1 << 30
    assert digest(mounted / "gib.bin") == want.hexdigest()
    os.unlink(mounted / "gib.bin")


def test_unlink_while_open_and_append(mounted):
    with open(mounted / "a.log", "ab") as f:
        f.write(b"one\n")
    with open(mounted / "a.log", "ab") as f:
        f.write(b"two\n")
    assert (mounted / "a.log").read_bytes() == b"one\ntwo\n"
    f = open(mounted / "a.log", "rb")
    try:
        os.unlink(mounted / "a.log")
        assert not (mounted / "a.log").exists()
        assert f.read() == b"one\ntwo\n"  # the open file still reads (delete on close)
        assert os.fstat(f.fileno()).st_size == 8  # and fstat still answers
        assert os.fstat(f.fileno()).st_nlink == 0
        # The name is free at once, as POSIX has it (SMB would keep it delete-pending).
        (mounted / "a.log").write_bytes(b"a new file\n")
        assert (mounted / "a.log").read_bytes() == b"a new file\n"
        assert f.read() == b""
    finally:
        f.close()
    assert (mounted / "a.log").read_bytes() == b"a new file\n"
    os.unlink(mounted / "a.log")
    assert not (mounted / "a.log").exists()


def test_rename_over_open_file_and_open_directory(mounted, samba):
    """xfstests generic/035: rename replaces a target that is open; the open target
    lives on with no links, its bytes intact, and goes when it is closed."""
    (mounted / "src").write_bytes(b"source\n")
    (mounted / "dst").write_bytes(b"target\n")
    with open(mounted / "dst", "rb") as f:
        os.rename(mounted / "src", mounted / "dst")
        assert os.fstat(f.fileno()).st_nlink == 0
        assert f.read() == b"target\n"
        assert (mounted / "dst").read_bytes() == b"source\n"
        names = os.listdir(mounted)
        assert "dst" in names and "src" not in names
    (mounted / "d1").mkdir()
    (mounted / "d2").mkdir()
    fd = os.open(mounted / "d2", os.O_RDONLY)
    try:
        os.rename(mounted / "d1", mounted / "d2")
        assert os.fstat(fd).st_nlink == 0
        assert (mounted / "d2").is_dir() and not (mounted / "d1").exists()
    finally:
        os.close(fd)
    (mounted / "d3").mkdir()
    (mounted / "d3" / "inside").write_bytes(b"x")
    fd = os.open(mounted / "d3", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as err:
            os.rename(mounted / "d2", mounted / "d3")
        assert err.value.errno == errno.ENOTEMPTY
        assert (mounted / "d3" / "inside").read_bytes() == b"x"  # put back as it was
    finally:
        os.close(fd)
    shutil.rmtree(mounted / "d3")
    os.rmdir(mounted / "d2")
    os.unlink(mounted / "dst")
    # Once closed, nothing of the replaced objects is left on the server.
    for _ in range(50):
        left = [p.name for p in samba.share_path("plain").iterdir()
                if p.name.startswith(".quicfs-")]
        if not left:
            break
        time.sleep(0.1)
    assert left == []


def test_directory_of_a_file_deleted_while_open_can_be_removed(mounted, server_dir, samba):
    """POSIX takes a file unlinked while open out of its directory at once: the
    directory can be removed while a program still reads the file (rm -rf of a tree in
    use; and the kernel's RELEASE may reach the mount after close(2) has returned)."""
    share = samba.share_path("plain")
    d = mounted / "gone-dir"
    d.mkdir()
    data = os.urandom(3000)
    (d / "open.bin").write_bytes(data)
    with open(d / "open.bin", "rb") as f:
        os.unlink(d / "open.bin")
        assert os.listdir(d) == []
        os.rmdir(d)
        assert not d.exists() and not (server_dir / "gone-dir").exists()
        # Where the file waits for its last close is hidden from listings.
        assert not [n for n in os.listdir(mounted.parent)  # the mount's root
                    if n.startswith(".quicfs-")]
        assert f.read() == data
    for _ in range(50):
        left = [p.name for p in share.iterdir() if p.name.startswith(".quicfs-")]
        if not left:
            break
        time.sleep(0.1)
    assert left == []


def test_ownership_and_modes_from_options(samba, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    opts = (f"transport=tcp,username={samba.username},password={samba.password},"
            "uid=1234,gid=2345,file_mode=0600,dir_mode=0700")
    with Mount(mnt, samba.url("plain"), opts):
        (mnt / "own.txt").write_bytes(b"x")
        (mnt / "owndir").mkdir()
        st = os.stat(mnt / "own.txt")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o600)
        st = os.stat(mnt / "owndir")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o700)
        os.unlink(mnt / "own.txt")
        os.rmdir(mnt / "owndir")


def test_server_gone_gives_eio_not_a_hang(samba_factory, tmp_path):
    import errno
    import time

    import pytest

    server = samba_factory()
    mnt = tmp_path / "m"
    mnt.mkdir()
    # soft: a hard mount (the default) would wait for the server without end.
    opts = (f"transport=tcp,username={server.username},password={server.password},"
            "actimeo=0,soft,timeo=5")
    with Mount(mnt, server.url("plain"), opts):
        (mnt / "before.txt").write_bytes(b"written before the server went away")
        server.stop()
        start = time.monotonic()
        with pytest.raises(OSError) as err:
            (mnt / "before.txt").read_bytes()
        assert err.value.errno in (errno.EIO, errno.ETIMEDOUT, errno.ECONNABORTED)
        with pytest.raises(OSError) as err:
            os.listdir(mnt)
        assert err.value.errno in (errno.EIO, errno.ETIMEDOUT, errno.ECONNABORTED)
        assert time.monotonic() - start < 30
    assert not is_mounted(mnt)


def test_read_ahead_sees_writes_through_the_mount(mounted):
    """Read-ahead must never serve bytes older than a write made through the mount."""
    data = bytearray(os.urandom(6 * 1024 * 1024))
    (mounted / "ra.bin").write_bytes(bytes(data))
    with open(mounted / "ra.bin", "rb", buffering=0) as r, \
            open(mounted / "ra.bin", "r+b", buffering=0) as w:
        first = r.read(65536)  # sequential: the next chunks are being fetched now
        assert first == bytes(data[:65536])
        w.seek(3 * 1024 * 1024)
        w.write(b"NEW" * 1000)
        data[3 * 1024 * 1024 : 3 * 1024 * 1024 + 3000] = b"NEW" * 1000
        os.posix_fadvise(r.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        rest = r.read()
    assert first + rest == bytes(data)
    os.unlink(mounted / "ra.bin")


def test_bytes_read_with_the_open_yield_to_later_writes(mounted, server_dir, request):
    """A small file's bytes read with its CREATE (Share.open head) serve its reads only
    until a write through the mount, through any handle, touches the file."""
    name = f"head-{request.node.callspec.id}.bin"
    data = bytearray(os.urandom(3000))
    on_server = server_dir / name
    on_server.write_bytes(bytes(data))
    st = on_server.parent.stat()
    os.chown(on_server, st.st_uid, st.st_gid)
    with open(mounted / name, "rb", buffering=0) as r:
        assert os.pread(r.fileno(), 100, 0) == bytes(data[:100])  # from the open's bytes
        with open(mounted / name, "r+b", buffering=0) as w:
            os.pwrite(w.fileno(), b"NEW", 10)
            os.pwrite(w.fileno(), b"END", 5000)  # past the end: a hole of zeros between
        data[10:13] = b"NEW"
        data += bytes(2000) + b"END"
        os.posix_fadvise(r.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(r.fileno(), 1 << 20, 0) == bytes(data)
    os.unlink(mounted / name)


def test_listing_while_writing_shows_the_written_size(mounted):
    """Sizes from readdir (readdirplus) include writes still gathered in the mount."""
    with open(mounted / "growing.bin", "wb") as f:
        f.write(b"x" * 300_000)
        f.flush()
        entries = {e.name: e.stat().st_size for e in os.scandir(mounted)}
        assert entries["growing.bin"] == 300_000
        assert os.stat(mounted / "growing.bin").st_size == 300_000
    assert (mounted / "growing.bin").read_bytes() == b"x" * 300_000
    os.unlink(mounted / "growing.bin")


def test_close_to_open_sees_other_clients_changes(mounted, server_dir, samba):
    """A file changed by another client (smbclient here) is read afresh on the next
    open, not served from the kernel's page cache."""
    (mounted / "shared.txt").write_bytes(b"A" * 5000)
    assert (mounted / "shared.txt").read_bytes() == b"A" * 5000  # now in the page cache
    local = samba.root / "other-client.txt"
    local.write_bytes(b"B" * 5000)  # same size: only the content differs
    proc = samba.smbclient("plain", f"put {local} shared.txt", "-D", server_dir.name)
    assert proc.returncode == 0, proc.stdout
    assert (mounted / "shared.txt").read_bytes() == b"B" * 5000
    os.unlink(mounted / "shared.txt")


def test_chmod_maps_write_bits_to_readonly(mounted):
    import stat as st_

    p = mounted / "ro.txt"
    p.write_bytes(b"keep me")
    os.chmod(p, 0o444)
    assert st_.S_IMODE(os.stat(p).st_mode) & 0o222 == 0
    os.chmod(p, 0o644)
    assert st_.S_IMODE(os.stat(p).st_mode) & 0o200
    with open(p, "ab") as f:
        f.write(b"!")
    assert p.read_bytes() == b"keep me!"
    os.unlink(p)


def test_listing_reuse_is_bounded_and_sees_own_changes(mounted, server_dir):
    import time

    (mounted / "lst").mkdir()
    assert os.listdir(mounted / "lst") == []
    (mounted / "lst" / "mine").write_bytes(b"")
    assert os.listdir(mounted / "lst") == ["mine"]  # our own change: at once
    other = server_dir / "lst" / "theirs"
    other.write_bytes(b"")  # another client's change: within actimeo (1 s)
    time.sleep(1.2)
    assert sorted(os.listdir(mounted / "lst")) == ["mine", "theirs"]
    shutil.rmtree(mounted / "lst")


def test_huge_directory_streams_every_entry(mounted, server_dir):
    """12,000 entries: many server pages and many kernel readdir calls, each resuming at
    the offset the last one stopped; every name once, with its size."""
    server = server_dir / "huge"
    server.mkdir()
    expected = {}
    for i in range(12_000):
        name = f"entry-{i:05d}-{'x' * (i % 40)}"
        (server / name).write_bytes(b"z" * (i % 7))
        expected[name] = i % 7
    with os.scandir(mounted / "huge") as it:
        seen = {e.name: e.stat().st_size for e in it}
    assert seen == expected
    # A reader that stops early and one that reads on both get what they read.
    with os.scandir(mounted / "huge") as it:
        first = [next(it).name for _ in range(10)]
    assert len(set(first)) == 10 and set(first) <= set(expected)
    shutil.rmtree(server)


def test_user_xattrs_are_smb_extended_attributes(mounted, server_dir):
    f = mounted / "xattrs.txt"
    f.write_bytes(b"x")
    os.setxattr(f, "user.colour", b"blue")
    os.setxattr(f, "user.bytes", bytes(range(256)))
    assert os.getxattr(f, "user.colour") == b"blue"
    assert os.getxattr(f, "user.bytes") == bytes(range(256))
    assert sorted(os.listxattr(f)) == ["user.bytes", "user.colour"]
    # Samba keeps an SMB EA as a user.* xattr of the file on its disk.
    on_disk = server_dir / "xattrs.txt"
    assert os.getxattr(on_disk, "user.colour") == b"blue"
    os.removexattr(f, "user.colour")
    assert os.listxattr(f) == ["user.bytes"]
    for call, expected in [
        (lambda: os.getxattr(f, "user.colour"), errno.ENODATA),
        (lambda: os.removexattr(f, "user.colour"), errno.ENODATA),
        (lambda: os.setxattr(f, "trusted.colour", b"red"), errno.EOPNOTSUPP),
        (lambda: os.setxattr(f, "user.empty", b""), errno.EINVAL),  # SMB: removal
    ]:
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == expected
    (mounted / "xattr-dir").mkdir()
    os.setxattr(mounted / "xattr-dir", "user.d", b"on a directory")
    assert os.getxattr(mounted / "xattr-dir", "user.d") == b"on a directory"
    os.rmdir(mounted / "xattr-dir")
    os.unlink(f)


def test_write_time_is_set_by_writes_and_stays(mounted):
    """POSIX moves mtime at each write; Samba moves it when the (deferred) close reaches
    it. The mount stamps the write time itself, so it is right at once and stays."""
    import mmap

    f = mounted / "mtime.txt"
    f.write_bytes(b"first\n")
    first = os.stat(f).st_mtime_ns
    assert parked_handles_closed(f, within=2.2)  # the handle has really closed
    assert os.stat(f).st_mtime_ns == first
    with open(f, "r+b") as fh, mmap.mmap(fh.fileno(), 6) as m:
        m[0:5] = b"FIRST"
    second = os.stat(f).st_mtime_ns
    assert second > first
    assert parked_handles_closed(f, within=2.2)
    assert os.stat(f).st_mtime_ns == second
    assert f.read_bytes() == b"FIRST\n"
    # A reader's close while the writer still writes (xfstests' `cat` of a file a
    # shell redirect holds): the reader's handle may not set times, and close() is fine.
    with open(f, "ab") as w:
        w.write(b"more\n")
        w.flush()
        with open(f, "rb") as r:
            assert r.read() == b"FIRST\nmore\n"
    os.utime(f, ns=(10**18, 10**18))
    assert os.stat(f).st_mtime_ns == 10**18
    os.unlink(f)


@pytest.mark.slow
def test_no_open_left_behind_under_concurrent_churn(mounted, samba):
    """Four threads create, append, read, truncate, fsync, link, rename and delete over a
    few names at once, as fsstress does. No SMB open may outlive its use: one did (a
    parked handle whose lease bookkeeping was replaced), and the deleted file then
    stayed pending on the server and its directory could not be removed."""
    import random

    d = mounted / "churn"
    d.mkdir()

    def churn(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(400):
            a, b = d / f"f{r.randrange(6)}", d / f"f{r.randrange(6)}"
            op = r.randrange(7)
            try:
                if op == 0:
                    with open(a, "ab") as f:
                        f.write(b"y" * r.randrange(100))
                elif op == 1:
                    a.read_bytes()
                elif op == 2:
                    os.unlink(a)
                elif op == 3:
                    os.rename(a, b)
                elif op == 4:
                    os.link(a, b)
                elif op == 5:
                    os.truncate(a, r.randrange(50))
                else:
                    fd = os.open(a, os.O_RDWR)
                    os.fsync(fd)
                    os.close(fd)
            except OSError:
                pass  # the names race each other by design

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # As xfstests does it: ENOTEMPTY if a deleted file is still held open.
    rm = subprocess.run(["rm", "-rf", str(d)], capture_output=True, text=True)
    assert (rm.returncode, rm.stderr) == (0, "")
    assert not d.exists()
    # Parked handles close after closetimeo: none is left 2.5 s on.
    deadline = time.monotonic() + 2.5
    while True:
        opened = subprocess.run(["smbstatus", "-s", str(samba.conf), "-L"],
                                capture_output=True, text=True).stdout
        if "churn/" not in opened or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "churn/" not in opened, opened


def test_programs_on_the_share_can_be_run(mounted):
    """Files show mode 0755 unless file_mode= says otherwise (mount.cifs's default): a
    program copied to the share runs from there (xfstests generic/120 does)."""
    script = mounted / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from the share\n")
    assert os.stat(script).st_mode & 0o777 == 0o755
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "hello from the share\n")
    os.unlink(script)


def test_extreme_timestamps_are_clamped_not_fatal(mounted):
    """xfstests generic/634 sets the largest and smallest times: SMB's FILETIME holds
    1601 to 30828, so they are clamped (as a local file system clamps to its range) and
    the mount lives on."""
    f = mounted / "times.txt"
    f.write_bytes(b"t")
    os.utime(f, ns=(2**63 - 1, 2**63 - 1))
    big = os.stat(f).st_mtime_ns
    assert big > 10**18 * 9  # far in the future, as far as FILETIME goes
    os.utime(f, ns=(-(2**63), -(2**63)))
    assert os.stat(f).st_mtime_ns < 0  # before 1970: 1601, FILETIME's first tick
    assert f.read_bytes() == b"t"
    os.unlink(f)


def test_renames_through_another_mount_are_followed(mounted, samba, gateway, tmp_path):
    """xfstests generic/732: a file moved back and forth through two mounts of the share
    opens by the name it has now, not the one this mount gave it last."""
    other = tmp_path / "other"
    other.mkdir()
    with Mount(other, gateway.url("plain"), gateway.options(samba)) as root:
        second = root / mounted.name
        (mounted / "A").mkdir()
        (mounted / "B").mkdir()
        (mounted / "A" / "f").write_bytes(b"moved about")
        os.rename(mounted / "A" / "f", mounted / "B" / "f")
        assert (second / "B" / "f").read_bytes() == b"moved about"
        os.rename(second / "B" / "f", second / "A" / "f")
        assert (mounted / "A" / "f").read_bytes() == b"moved about"
        os.rename(mounted / "A" / "f", mounted / "B" / "f")
        assert (second / "B" / "f").read_bytes() == b"moved about"
        assert not (mounted / "A" / "f").exists()
    # Once the other mount is gone: its deferred close would keep f pending a second.
    shutil.rmtree(mounted / "A")
    shutil.rmtree(mounted / "B")


def test_metadata_changes_move_ctime(mounted):
    """A link, chmod, utimes, setxattr, removexattr and rename each move the file's
    ctime (generic/221, 236, 728); Samba reports mtime as the change time, so the mount
    keeps it."""
    f, moved = mounted / "ctime.txt", mounted / "ctime-moved.txt"
    f.write_bytes(b"c")
    mtime = os.stat(f).st_mtime_ns
    changes = [
        ("link", lambda: os.link(f, mounted / "ctime-link.txt")),
        ("chmod", lambda: os.chmod(f, 0o644)),
        ("utimes", lambda: os.utime(f, ns=(mtime, mtime))),
        ("setxattr", lambda: os.setxattr(f, "user.stamp", b"1")),
        ("removexattr", lambda: os.removexattr(f, "user.stamp")),
        ("rename", lambda: os.rename(f, moved)),
    ]
    for what, change in changes:
        before = os.stat(f).st_ctime_ns
        time.sleep(0.02)
        change()
        after = os.stat(moved if what == "rename" else f).st_ctime_ns
        assert after > before, what
    assert os.stat(moved).st_mtime_ns == mtime  # utimes set it; nothing since moved it
    os.unlink(moved)
    os.unlink(mounted / "ctime-link.txt")


def test_directory_times_follow_changes_inside(mounted):
    """Every name added or removed in a directory moves its mtime and ctime (POSIX),
    though the mount answers the kernel's re-asking from what it holds."""
    d = mounted / "dirtimes"
    d.mkdir()
    (d / "old").write_bytes(b"o")
    changes = [
        ("create", lambda: (d / "new").write_bytes(b"n")),
        ("mknod", lambda: os.mknod(d / "node", 0o644 | 0o100000)),
        ("symlink", lambda: os.symlink("new", d / "sym")),
        ("link", lambda: os.link(d / "new", d / "hard")),
        ("unlink", lambda: os.unlink(d / "hard")),
        ("rename", lambda: os.rename(d / "node", d / "node2")),
        ("mkdir", lambda: os.mkdir(d / "sub")),
        ("rmdir", lambda: os.rmdir(d / "sub")),
    ]
    for what, change in changes:
        before = os.stat(d)
        time.sleep(0.02)
        change()
        after = os.stat(d)
        assert after.st_mtime_ns > before.st_mtime_ns, what
        assert after.st_ctime_ns > before.st_ctime_ns, what
    # Opening an existing file with O_CREAT adds no name: the directory stays.
    before = os.stat(d).st_mtime_ns
    time.sleep(0.02)
    os.close(os.open(d / "old", os.O_WRONLY | os.O_CREAT))
    assert os.stat(d).st_mtime_ns == before
    assert sorted(os.listdir(d)) == ["new", "node2", "old", "sym"]
    shutil.rmtree(d)


def test_ftruncate_then_read_back_and_fstat(mounted):
    """Write, truncate through the handle, write again: fstat and reads show exactly
    what the handle did, each step (looptest -t, generic/129)."""
    data = os.urandom(300_000)
    fd = os.open(mounted / "trunc.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for size, cut in ((102_400, 0), (300_000, 123_457), (8192, 4096), (65_536, 70_000)):
            os.pwrite(fd, data[:size], 0)
            assert os.pread(fd, size, 0) == data[:size]
            os.ftruncate(fd, cut)
            assert os.fstat(fd).st_size == cut
            expect = data[:min(size, cut)].ljust(cut, b"\0")
            assert hashlib.sha256(os.pread(fd, cut + 10, 0)).hexdigest() == \
                hashlib.sha256(expect).hexdigest()
    finally:
        os.close(fd)
    assert (mounted / "trunc.bin").read_bytes() == data[:65_536].ljust(70_000, b"\0")
    os.unlink(mounted / "trunc.bin")


def test_statfs_sizes_and_posix_fallocate(mounted):
    """statfs counts blocks in the server's allocation units and names 64 KiB as the
    I/O size; posix_fallocate (glibc writes a zero byte per block: FUSE has no
    fallocate here) leaves the size asked and zeros."""
    vfs = os.statvfs(mounted)
    assert vfs.f_bsize == 65536 and vfs.f_frsize == 1024  # Samba's allocation unit
    fd = os.open(mounted / "falloc.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"head", 0)
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        for page in range(0, 256, 17):
            os.pwrite(fd, page.to_bytes(8, "little"), page * 4096 + 100)
    finally:
        os.close(fd)
    expect = bytearray(1 << 20)
    expect[:4] = b"head"
    for page in range(0, 256, 17):
        expect[page * 4096 + 100:page * 4096 + 108] = page.to_bytes(8, "little")
    got = (mounted / "falloc.bin").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expect).hexdigest()
    os.unlink(mounted / "falloc.bin")


def test_reads_between_writes_see_every_write(mounted):
    """Writes through one handle and sequential reads through another, by turns: every
    read shows every write made before it, wherever it lands (read-ahead lays writes
    over what it fetched instead of fetching again)."""
    import random

    rng = random.Random(346)
    model = bytearray(os.urandom(3 * 1024 * 1024))
    (mounted / "turns.bin").write_bytes(bytes(model))
    with open(mounted / "turns.bin", "rb", buffering=0) as r, \
            open(mounted / "turns.bin", "r+b", buffering=0) as w:
        pos = 0
        for _ in range(300):
            off = rng.randrange(0, len(model) + 100_000)
            data = os.urandom(rng.randrange(1, 9000))
            os.pwrite(w.fileno(), data, off)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(data)] = data
            # Drop the kernel's pages, so the read reaches the mount.
            os.posix_fadvise(r.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            n = rng.randrange(1, 70_000)
            assert os.pread(r.fileno(), n, pos) == bytes(model[pos:pos + n]), (off, pos)
            pos = pos + n if pos + n < len(model) else 0
    assert hashlib.sha256((mounted / "turns.bin").read_bytes()).hexdigest() == \
        hashlib.sha256(model).hexdigest()
    os.unlink(mounted / "turns.bin")


def test_mmap_and_pwrite_on_the_same_pages(mounted):
    """generic/346's holetest: one thread marks every page through a shared mapping,
    another writes beside it on the same page with pwrite; both marks are there after."""
    import mmap

    pages, size = 512, 512 * 4096
    path = mounted / "holes.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as m:
            def mark() -> None:
                for p in range(pages):
                    m[p * 4096 + 1024:p * 4096 + 1032] = (p + 1).to_bytes(8, "little")

            def write() -> None:
                for p in range(pages):
                    os.pwrite(fd, (p + 7).to_bytes(8, "little"), p * 4096 + 3072)

            threads = [threading.Thread(target=mark), threading.Thread(target=write)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            m.flush()
    finally:
        os.close(fd)
    expect = bytearray(size)
    for p in range(pages):
        expect[p * 4096 + 1024:p * 4096 + 1032] = (p + 1).to_bytes(8, "little")
        expect[p * 4096 + 3072:p * 4096 + 3080] = (p + 7).to_bytes(8, "little")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(expect).hexdigest()
    os.unlink(path)


def test_truncating_open_drops_other_handles_read_ahead(mounted):
    """open(O_TRUNC) through one handle: another handle's reads show the new, short
    file, not what it read ahead of the old one."""
    old = os.urandom(2 * 1024 * 1024)
    (mounted / "otrunc.bin").write_bytes(old)
    with open(mounted / "otrunc.bin", "rb", buffering=0) as r:
        assert r.read(65536) == old[:65536]  # the next chunks are fetched now
        with open(mounted / "otrunc.bin", "wb", buffering=0) as w:
            w.write(b"fresh")
            w.seek(100_000)
            w.write(b"end")  # a hole between: zeros, never the old bytes
        os.posix_fadvise(r.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        expect = b"fresh".ljust(100_000, b"\0") + b"end"
        assert os.pread(r.fileno(), 1 << 20, 0) == expect
    os.unlink(mounted / "otrunc.bin")
