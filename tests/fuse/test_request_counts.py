"""The mount's stats answer counts the SMB requests its operations send (issue 22):
bench/roundtrips.py reads them around each operation group."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from quicfs import control


def counts(mnt) -> tuple[int, int]:
    s = control.ask(str(mnt), "stats")
    return s["smb_sends"], s["smb_messages_sent"]


def test_a_missing_name_costs_one_compound(mounted):
    os.stat(mounted)  # the root's attributes fresh: the lookup below needs nothing else
    before = counts(mounted)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / "no-such-name")
    sends, messages = counts(mounted)
    # One LOOKUP: CREATE + QUERY_INFO + CLOSE in one related compound (one wait).
    assert (sends - before[0], messages - before[1]) == (1, 3)


def test_a_small_file_read_whole_costs_one_compound(mounted, samba, request):
    """open(2) of a file for reading asks for its first 64 KiB in the CREATE's compound
    (Share.open head): a small file read whole waits for that one round trip alone."""
    name = f"small-{request.node.callspec.id}"
    data = os.urandom(5000)
    on_server = samba.share_path("plain") / name
    on_server.write_bytes(data)
    st = on_server.parent.stat()
    os.chown(on_server, st.st_uid, st.st_gid)
    os.stat(mounted / name)  # looked up: the open below needs nothing else
    before = counts(mounted)
    assert (mounted / name).read_bytes() == data
    sends, messages = counts(mounted)
    assert (sends - before[0], messages - before[1]) == (1, 2)  # CREATE + READ


def test_in_a_listed_directory_mkdir_and_create_need_no_lookup(mounted, request):
    """After a listing to the end (or a mkdir), the kernel's LOOKUP of a new name is
    answered "absent" here (fs/absent.py), and the parent's attributes stay held: a
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
