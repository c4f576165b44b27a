"""Leases at the mount: the kernel's page cache kept while the server promises nobody
changed the file, dropped on a break; gathered writes sent before a break is answered;
parked (deferred-close) handles that never get in another client's way."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.fuse.conftest import parked_handles_closed

LENGTH = 300_000


def _behind_sambas_back(path, data: bytes) -> None:
    """Change a file on the server's disk without SMB (no lease break can follow), keeping
    size and mtime so the kernel has no attribute change to notice either."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _eventually(read, expected: bytes, within: float = 5.0) -> bytes:
    deadline = time.monotonic() + within
    while True:
        got = read()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_page_cache_kept_under_lease_and_dropped_on_break(mounted, server_dir, samba):
    a, b, c = (bytes([x]) * LENGTH for x in b"ABC")
    name = "leased.bin"
    server = server_dir / name
    (mounted / name).write_bytes(a)
    with open(mounted / name, "rb") as holder:  # holds the lease across the reads below
        assert holder.read() == a
        assert (mounted / name).read_bytes() == a
        _behind_sambas_back(server, b)
        # Only the kernel's pages can still say A: they were kept because the lease held.
        assert (mounted / name).read_bytes() == a
        # Another client writes through SMB: the server breaks our lease before its open
        # completes, and the pages go.
        local = samba.root / "lease-c.bin"
        local.write_bytes(c)
        proc = samba.smbclient("plain", f"put {local} {name}", "-D", server_dir.name)
        assert proc.returncode == 0, proc.stdout
        assert _eventually(lambda: (mounted / name).read_bytes(), c) == c
    os.unlink(mounted / name)


def test_without_a_lease_holder_the_next_open_reads_afresh(mounted, server_dir):
    """Once the last handle is closed and its parking time (closetimeo, 1 s) is over, the
    lease is gone: nothing vouches for the pages, so the next open reads the server."""
    a, b = b"a" * LENGTH, b"b" * LENGTH
    server = server_dir / "unleased.bin"
    server.write_bytes(a)
    assert (mounted / "unleased.bin").read_bytes() == a
    assert parked_handles_closed(mounted, within=1.5)
    _behind_sambas_back(server, b)
    assert (mounted / "unleased.bin").read_bytes() == b
    os.unlink(mounted / "unleased.bin")


def test_gathered_writes_reach_another_client_on_break(mounted, server_dir, samba,
                                                       tmp_path):
    """Writes still gathered in the mount (less than one SMB write) are sent before the
    Write-caching break is acknowledged, so the other client reads every byte.

    The writer is a process of its own: a fork of the process holding the file would
    close its copy of the descriptor at exec, and that close flushes (FUSE FLUSH)."""
    data = os.urandom(100_000)
    src, out = tmp_path / "src.bin", tmp_path / "got.bin"
    src.write_bytes(data)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(src), str(mounted / "gathered.bin")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout.readline() == "written\n"
        proc = samba.smbclient("plain", f"get gathered.bin {out}", "-D", server_dir.name)
        assert proc.returncode == 0, proc.stdout
        assert out.read_bytes() == data
    finally:
        writer.communicate("\n", timeout=30)
    assert writer.returncode == 0
    os.unlink(mounted / "gathered.bin")


def test_attributes_held_under_the_lease_follow_writes_and_breaks(mounted, server_dir, samba,
                                                                  tmp_path):
    """While a file is open here under a lease, stat and read-back of what was just
    written are answered by the mount (no round trip); they follow every write, holes
    included, and another client's change (a lease break) is seen at once."""
    name = "held.bin"
    far = 3 * 1024 * 1024 + 17
    expected = b"a" * 5000 + bytes(far - 5000) + b"b" * 100
    with open(mounted / name, "w+b", buffering=0) as f:
        f.write(b"a" * 5000)
        assert os.fstat(f.fileno()).st_size == 5000
        before = os.fstat(f.fileno()).st_mtime_ns
        time.sleep(0.01)
        f.seek(far)
        f.write(b"b" * 100)
        st = os.fstat(f.fileno())
        assert st.st_size == far + 100
        assert st.st_mtime_ns > before
        f.seek(0)
        assert f.read() == expected
        assert os.pread(f.fileno(), 100, far) == b"b" * 100
        assert os.pread(f.fileno(), 4096, 1024 * 1024) == bytes(4096)  # the hole
        local = tmp_path / "other.bin"
        local.write_bytes(b"c" * 777)
        proc = samba.smbclient("plain", f"put {local} {name}", "-D", server_dir.name)
        assert proc.returncode == 0, proc.stdout
        assert _eventually(lambda: os.fstat(f.fileno()).st_size, 777) == 777
        f.seek(0)
        assert f.read() == b"c" * 777
    assert (server_dir / name).read_bytes() == b"c" * 777
    os.unlink(mounted / name)


WRITER = """
import sys
with open(sys.argv[2], "wb") as f:
    f.write(open(sys.argv[1], "rb").read())
    f.flush()  # into the mount; the file stays open
    print("written", flush=True)
    sys.stdin.readline()
"""


def test_parked_handles_never_block_renames_or_deletes(mounted, server_dir, samba):
    """A closed file's handle is parked for a second; renaming its directory, deleting
    it, or another client deleting it must work at once all the same."""
    d = mounted / "parkdir"
    d.mkdir()
    (d / "f.txt").write_bytes(b"x" * 1000)
    assert (d / "f.txt").read_bytes() == b"x" * 1000
    os.rename(d, mounted / "parkdir2")  # SMB refuses this with a handle open inside
    assert (mounted / "parkdir2" / "f.txt").read_bytes() == b"x" * 1000
    os.unlink(mounted / "parkdir2" / "f.txt")
    assert not (server_dir / "parkdir2" / "f.txt").exists()
    os.rmdir(mounted / "parkdir2")
    # Another client deletes a file we just closed: its name is gone on the server at once
    # (the break takes our parked handle away before the delete completes).
    (mounted / "theirs.txt").write_bytes(b"y" * 1000)
    assert (mounted / "theirs.txt").read_bytes() == b"y" * 1000
    started = time.monotonic()
    proc = samba.smbclient("plain", "rm theirs.txt", "-D", server_dir.name)
    assert proc.returncode == 0, proc.stdout
    assert time.monotonic() - started < 10  # not the 35 s break timeout
    # SMB keeps a deleted name "delete pending" until the last handle closes: our parked
    # one closes within closetimeo (1 s), as with cifs.ko's deferred close.
    assert _gone_soon(server_dir / "theirs.txt")
    assert _gone_soon(mounted / "theirs.txt")


def test_rename_of_an_open_file_over_a_parked_one(mounted, server_dir):
    """Renaming a file open here over one just closed (its handle parked): the rename's
    open must break our own handle's lease (it asks for DELETE access), so the server
    finishes it asynchronously. Sent in one compound behind the parked handle's CLOSE,
    that open went async mid-compound and Samba failed it (STATUS_INTERNAL_ERROR, and a
    reply whose signature did not check): the rename failed with EIO."""
    share = server_dir
    for i in range(3):
        closed, held = f"closed-{i}.bin", f"held-{i}.bin"
        old, new = os.urandom(5_000), os.urandom(7_000)
        (mounted / closed).write_bytes(old)
        assert (mounted / closed).read_bytes() == old  # its handle is parked
        with open(mounted / held, "w+b") as f:
            f.write(new)
            f.flush()
            os.rename(mounted / held, mounted / closed)
            f.seek(0)
            assert f.read() == new
        assert (share / closed).read_bytes() == new
        assert not (share / held).exists()
        os.unlink(mounted / closed)


def _gone_soon(path, within: float = 2.5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.05)
    return not path.exists()


def test_our_own_stats_break_none_of_our_leases(samba, gateway, tmp_path):
    """With metadata, a stat by name opens the file with FILE_READ_EA access, which Samba
    counts as a real open: made under no lease key, it broke the Write caching of our own
    handle parked after a close (a break and its acknowledgement, a round trip more, on
    nearly every stat of a file just written). Made under the file's lease key, it breaks
    nothing. Another client's open still breaks the lease and sees every byte."""
    from quicfs import control
    from tests.fuse.conftest import Mount

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = gateway.options(samba) + ",metadata,actimeo=0"  # every stat asks the server
    data = {f"f{i}.bin": os.urandom(10_000 + i) for i in range(5)}
    with Mount(mnt, gateway.url("plain"), opts):
        for name, content in data.items():
            (mnt / name).write_bytes(content)  # closed: its handle parked, lease R+W+H
            for _ in range(3):
                st = os.stat(mnt / name)
                assert st.st_size == len(content)
                assert st.st_mode & 0o777 == 0o644 & ~_umask()
        stats = control.ask(str(mnt), "stats")
        assert stats["lease_breaks"] == 0, stats
        assert stats["parked_handles"] >= 1, stats
        # Another client: its open breaks our lease, and it reads what we wrote.
        proc = samba.smbclient("plain", f"get f0.bin {tmp_path / 'f0.copy'}")
        assert proc.returncode == 0, proc.stdout
        assert (tmp_path / "f0.copy").read_bytes() == data["f0.bin"]
        for name, content in data.items():
            assert (mnt / name).read_bytes() == content
            os.unlink(mnt / name)
            assert not (samba.share_path("plain") / name).exists()
        assert control.ask(str(mnt), "stats")["lease_breaks"] >= 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
