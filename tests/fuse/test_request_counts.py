"""The mount's stats answer counts the SMB requests its operations send (issue 22):
bench/roundtrips.py reads them around each operation group."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quicfs import control
from tests.fuse.conftest import parked_handles_closed


@pytest.fixture
def mounted(fresh_mount: Path) -> Path:
    """The root of a mount of this test's own: the counts asserted here are the
    mount's, and another test's parked handles, leases and listings would add to them."""
    return fresh_mount


def counts(mnt) -> tuple[int, int]:
    s = control.ask(str(mnt), "stats")
    return s["smb_sends"], s["smb_messages_sent"]


def on_server(samba, relative: str, data: bytes | None = None) -> None:
    """Make a file (``data``) or directory (None) on the server's disk, as another
    client would, owned as the share's files are."""
    path = samba.share_path("plain") / relative
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    st = path.parent.stat()
    os.chown(path, st.st_uid, st.st_gid)


def listed_by_a_lookup(samba, mounted, top: str, files: dict[str, bytes]):
    """Directory ``top`` with ``files`` made on the server, then listed by the mount
    for the lookup of a name it does not hold; the directory in the mount."""
    on_server(samba, top)
    for name, data in files.items():
        on_server(samba, f"{top}/{name}", data)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / top / "missing")
    return mounted / top


def test_a_missing_name_costs_one_compound(mounted):
    os.stat(mounted)  # the root's attributes fresh: the lookup below needs nothing else
    before = counts(mounted)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / "no-such-name")
    sends, messages = counts(mounted)
    # One LOOKUP, one wait: the small root listed whole (CREATE + QUERY_DIRECTORY x 2 +
    # CLOSE in one related compound) tells this name and its others.
    assert (sends - before[0], messages - before[1]) == (1, 4)


@pytest.mark.quiet  # all within actimeo
def test_a_lookup_lists_a_small_directory_for_its_other_names(mounted, samba, request):
    """The first LOOKUP in a directory not listed lists it whole (Operations._snapshot):
    for actimeo the others, present or absent, cost nothing; then it is listed again."""
    top = f"snap-{request.node.callspec.id}"
    on_server(samba, top)
    for i in range(3):
        on_server(samba, f"{top}/f{i}", b"x" * (i + 1))
    os.stat(mounted / top)
    before = counts(mounted)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / top / "missing")
    listed = time.monotonic()
    assert counts(mounted)[0] - before[0] == 1
    sizes = [os.stat(mounted / top / f"f{i}").st_size for i in range(3)]
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / top / "missing-too")
    assert time.monotonic() - listed < 1.0, "too slow to tell: run again"
    assert sizes == [1, 2, 3]
    assert counts(mounted)[0] - before[0] == 1  # every answer from that one listing
    assert sorted(os.listdir(mounted / top)) == ["f0", "f1", "f2"]  # a listing of its own
    time.sleep(1.1)
    os.stat(mounted / top)  # its own entry and attributes, expired too, come first
    again = counts(mounted)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / top / "missing-again")
    assert (counts(mounted)[0] - again[0]) == 1


def test_another_clients_create_delete_rename_and_write_show_after_actimeo(
        mounted, samba, request):
    """What another client does in a directory listed for a lookup is seen once actimeo
    (1 s) has passed since the listing: a new name, a deleted one, a renamed one, a
    file grown."""
    top = f"others-{request.node.callspec.id}"
    here = listed_by_a_lookup(samba, mounted, top, dict.fromkeys(("gone", "moved", "grown"),
                                                                  b"1"))
    assert os.stat(here / "grown").st_size == 1
    assert not (here / "new").exists()
    listed = time.monotonic()
    server = samba.share_path("plain") / top
    on_server(samba, f"{top}/new", b"made elsewhere")
    (server / "gone").unlink()
    (server / "moved").rename(server / "moved-to")
    with open(server / "grown", "ab") as f:
        f.write(b"22")
    time.sleep(max(0.0, listed + 1.2 - time.monotonic()))
    assert (here / "new").read_bytes() == b"made elsewhere"
    assert not (here / "gone").exists()
    assert not (here / "moved").exists()
    assert (here / "moved-to").read_bytes() == b"1"
    assert os.stat(here / "grown").st_size == 3
    assert (here / "grown").read_bytes() == b"122"


@pytest.mark.quiet  # all within actimeo
def test_a_file_changed_here_is_never_answered_from_an_older_listing(mounted, samba,
                                                                    request):
    """A listing taken for a lookup answers a name's attributes only until this mount
    writes, truncates or renames it. Here the files are open across the listing (their
    writes then need no lookup); the kernel asks again once it has let go of its own
    entries (drop_caches), and gets what the server now says."""
    here = listed_by_a_lookup(samba, mounted, f"mine-{request.node.callspec.id}",
                              dict.fromkeys(("written", "cut", "renamed"), b"12345"))
    written = open(here / "written", "ab")  # open across the listing
    cut = open(here / "cut", "r+b")
    os.stat(here / "renamed")
    time.sleep(1.1)  # that listing is past; the next lookup lists the directory again
    with pytest.raises(FileNotFoundError):
        os.stat(here / "missing-too")
    listed = time.monotonic()
    with written:
        written.write(b"678")
    with cut:
        cut.truncate(2)
    os.rename(here / "renamed", here / "renamed-to")
    Path("/proc/sys/vm/drop_caches").write_text("2")  # the kernel forgets its dentries
    assert os.stat(here / "written").st_size == 8
    assert os.stat(here / "cut").st_size == 2
    assert not (here / "renamed").exists()
    assert os.stat(here / "renamed-to").st_size == 5
    assert time.monotonic() - listed < 1.0, "too slow to tell: run again"


def test_a_small_file_read_whole_costs_one_compound(mounted, samba, request):
    """open(2) of a file for reading asks for its first 64 KiB in the CREATE's compound
    (Share.open head): a small file read whole waits for that one round trip alone."""
    name = f"small-{request.node.callspec.id}"
    data = os.urandom(5000)
    on_server(samba, name, data)
    os.stat(mounted / name)  # looked up: the open below needs nothing else
    before = counts(mounted)
    assert (mounted / name).read_bytes() == data
    sends, messages = counts(mounted)
    assert (sends - before[0], messages - before[1]) == (1, 2)  # CREATE + READ


@pytest.mark.serial  # drop_caches: every mount's dentries, other tests' counts with them
def test_a_file_made_as_tar_makes_it_waits_for_two_round_trips(mounted, samba, request):
    """tar x: open(O_CREAT | O_EXCL), write, futimens, fchown, close. The CREATE; at
    close the WRITE and then the times, through our own handle, in one compound (Samba
    moves a time set on a handle at the handle's next WRITE, whatever MS-FSA 2.1.5.14.2
    says: the times go after it). The chown (owners are not SMB's to keep without mount
    option metadata) and the fstat are answered from what the lease holds."""
    top = mounted / f"tar-{request.node.callspec.id}"
    top.mkdir()  # made here: known empty, so the LOOKUP needs no request
    atime, mtime = 1_500_000_000_000_000_000, 1_600_000_000_123_456_700
    before = counts(mounted)
    fd = os.open(top / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"hi\n")
    os.utime(fd, ns=(atime, mtime))
    os.fchown(fd, os.getuid(), os.getgid())
    assert os.fstat(fd).st_mtime_ns == mtime
    assert counts(mounted)[0] - before[0] == 1  # the CREATE alone so far
    os.close(fd)
    sends, messages = counts(mounted)
    # CREATE; WRITE + SET_INFO as one compound at close (the file's CLOSE is parked).
    assert (sends - before[0], messages - before[1]) == (2, 3)
    Path("/proc/sys/vm/drop_caches").write_text("2")  # the next stat asks the server
    assert (os.stat(top / "f").st_atime_ns, os.stat(top / "f").st_mtime_ns) == (atime,
                                                                                 mtime)
    # On the server's disk once the parked handle is closed (closetimeo, 1 s).
    server = samba.share_path("plain") / top.name / "f"
    deadline = time.monotonic() + 5
    while server.stat().st_mtime_ns != mtime:
        assert time.monotonic() < deadline, server.stat()
        time.sleep(0.1)
    assert server.stat().st_atime_ns == atime  # before reading it (relatime moves it)
    assert server.read_bytes() == b"hi\n"


def test_a_write_after_futimens_moves_the_mtime_again(mounted, samba, request):
    """A write after futimens moves mtime again, as POSIX says; the atime set stays."""
    path = mounted / f"later-{request.node.callspec.id}"
    old = 1_000_000_000_000_000_000
    with open(path, "wb") as f:
        f.write(b"a")
        os.utime(f.fileno(), ns=(old, old))
        f.flush()
        f.write(b"b")
    server = samba.share_path("plain") / path.name
    on_disk = server.stat()  # before reading it, which moves its atime (relatime)
    assert on_disk.st_atime_ns == old
    assert on_disk.st_mtime_ns > old + 10**18 // 2
    assert os.stat(path).st_mtime_ns > old + 10**18 // 2
    assert server.read_bytes() == b"ab"


def test_a_listing_for_a_lookup_never_shrinks_a_file_written_here(mounted, samba, request):
    """Writes gathered here are not on the server when a lookup lists the directory:
    a listing after (ls) still shows them, and the appends after them land after them."""
    here = listed_by_a_lookup(samba, mounted, f"gathered-{request.node.callspec.id}",
                              {"log": b"12345"})
    with open(here / "log", "ab", buffering=0) as log:
        log.write(b"678")  # gathered: not sent yet
        time.sleep(1.1)  # the listing is past: the next lookup lists the directory again
        with pytest.raises(FileNotFoundError):
            os.stat(here / "missing-too")
        assert {e.name: e.stat().st_size for e in os.scandir(here)} == {"log": 8}
        log.write(b"9")
    assert (here / "log").read_bytes() == b"123456789"


def test_another_name_of_a_file_written_here_is_asked_for(mounted, samba, request):
    """A hard link the kernel has not looked up is of a file this mount knows by its
    other name: what a listing taken before our write says of it is not answered."""
    top = f"links-{request.node.callspec.id}"
    here = listed_by_a_lookup(samba, mounted, top, {"f": b"12345"})
    server = samba.share_path("plain") / top
    os.link(server / "f", server / "g")
    time.sleep(1.1)
    with pytest.raises(FileNotFoundError):
        os.stat(here / "missing-too")  # lists f and g, 5 bytes each
    with open(here / "f", "ab") as f:
        f.write(b"678")
    assert os.stat(here / "g").st_size == 8
    assert (here / "g").read_bytes() == b"12345678"


def test_in_a_listed_directory_mkdir_and_create_need_no_lookup(mounted, request):
    """After a listing to the end (or a mkdir), the kernel's LOOKUP of a new name is
    answered "absent" here (fs/known.py), and the parent's attributes stay held: a
    mkdir is its one compound, as is a file's create, and a stat of the parent after
    costs nothing."""
    top = mounted / f"listed-{request.node.callspec.id}"
    top.mkdir()
    (top / "old").write_bytes(b"x")
    os.listdir(top)
    os.stat(top)
    before = counts(mounted)
    (top / "sub").mkdir()
    after_mkdir = counts(mounted)
    # One compound: CREATE + QUERY_INFO + CLOSE.
    assert (after_mkdir[0] - before[0], after_mkdir[1] - before[1]) == (1, 3)
    assert os.stat(top).st_mtime_ns >= os.stat(top / "old").st_mtime_ns
    assert counts(mounted) == after_mkdir  # the parent's attributes were held
    fd = os.open(top / "sub" / "new", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    sends, _ = counts(mounted)
    assert sends - after_mkdir[0] == 1  # the CREATE alone: sub was made empty here
    assert sorted(os.listdir(top / "sub")) == ["new"]


def test_another_clients_name_shows_after_actimeo(mounted, samba, request):
    """A name another client makes in a directory listed here is found once actimeo
    (1 s) has passed since the listing."""
    name = f"theirs-{request.node.callspec.id}"
    top = mounted / f"other-{request.node.callspec.id}"
    top.mkdir()
    os.listdir(top)
    listed = time.monotonic()
    on_server = samba.share_path("plain") / top.name / name
    on_server.write_bytes(b"made elsewhere")
    st = on_server.parent.stat()
    os.chown(on_server, st.st_uid, st.st_gid)
    time.sleep(max(0.0, listed + 1.2 - time.monotonic()))
    assert (top / name).read_bytes() == b"made elsewhere"


def test_a_small_directory_is_listed_in_one_compound(mounted, request):
    """opendir asks for the first pages with the directory's CREATE (Share.open_listing):
    the second page's "no more files" says the listing is whole, in one round trip."""
    top = mounted / f"small-dir-{request.node.callspec.id}"
    top.mkdir()
    names = [f"entry-{i:03}" for i in range(300)]
    for name in names:
        (top / name).touch()
    time.sleep(1.1)  # past actimeo: no listing of ours is reused
    # The touches' handles, parked for closetimeo (1 s) each, all closed: on a busy
    # machine the last CLOSEs came after that second and were counted below.
    assert parked_handles_closed(top, within=5)
    os.stat(top)
    before = counts(mounted)
    assert sorted(os.listdir(top)) == names
    sends, messages = counts(mounted)
    # CREATE + QUERY_DIRECTORY x 2; the CLOSE goes when the kernel releases the handle.
    assert (sends - before[0], messages - before[1]) in ((1, 3), (2, 4))


def test_utime_brings_the_attributes_back_in_its_compound(mounted, request):
    """utimensat (tar x, touch -d) sets the times and reads the attributes the kernel
    gets back in one compound: CREATE + SET_INFO + QUERY_INFO + CLOSE."""
    path = mounted / f"times-{request.node.callspec.id}"
    path.write_bytes(b"x")
    os.stat(path)
    before = counts(mounted)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_200_000_000_000_000_000))
    sends, messages = counts(mounted)
    assert (sends - before[0], messages - before[1]) == (1, 4)
    assert os.stat(path).st_mtime_ns == 1_200_000_000_000_000_000


def test_quicfs_stats_prints_the_counts(mounted):
    """`quicfs stats` (text) shows the counters the JSON answer carries."""
    os.listdir(mounted)
    sends, messages = counts(mounted)
    proc = subprocess.run([sys.executable, "-m", "quicfs.cli.main", "stats", str(mounted)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"^  SMB requests (\d+) in (\d+) sends \(a compound is one send\)$",
                      proc.stdout, re.M)
    assert found, proc.stdout
    # Nothing but the mount's own timers may send between the two asks.
    assert int(found[1]) >= messages and int(found[2]) >= sends
    assert int(found[1]) - messages == int(found[2]) - sends  # any such send: one message
