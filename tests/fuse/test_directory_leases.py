"""Directory leases (issue 22): a directory in use for longer than actimeo is listed
again under a lease (Samba 4.22 grants them), and its names are then answered here past
actimeo, until another client's change breaks the lease. The other client here is a
real one (smbclient): a change made on the server's disk behind Samba's back breaks no
lease, for quicfs as for any SMB client."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from quicfs import control
from tests.fuse.test_request_counts import counts, on_server


@pytest.fixture
def mounted(fresh_mount: Path) -> Path:
    """The root of a mount of this test's own: the leases and counts asserted here are
    the mount's, and another test's parked handles, leases and listings would add to
    them."""
    return fresh_mount


def leases(mnt) -> tuple[int, int, int]:
    s = control.ask(str(mnt), "stats")
    return s["directory_leases"], s["directory_leases_taken"], s["directory_leases_broken"]


def leased(samba, mounted, top: str, files: dict[str, bytes] | None = None):
    """Directory ``top`` made on the server (with ``files``; None: it is there already),
    listed for a lookup, then again once that listing outlived actimeo (1 s): the
    second listing takes a lease. (What is made on the server's disk behind Samba's back
    breaks no lease: a leased directory's parts are all made first.)"""
    if files is not None:
        on_server(samba, top)
        for name, data in files.items():
            on_server(samba, f"{top}/{name}", data)
    here = mounted / top
    with pytest.raises(FileNotFoundError):
        os.stat(here / "missing")
    taken = leases(mounted)[1]
    time.sleep(1.1)
    with pytest.raises(FileNotFoundError):
        os.stat(here / "missing-again")
    assert leases(mounted)[1] > taken  # (its parents, walked again, may be leased too)
    return here


class In:
    """stat(2) of names by a descriptor of a directory opened beforehand, as a process
    whose working directory it is: the kernel walks no path from the mount's root (whose
    own attributes no lease covers: it has no parent)."""

    def __init__(self, directory) -> None:
        self.fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)

    def __enter__(self) -> In:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def stat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd)


def broken_after(mounted, before: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if leases(mounted)[2] > before:
            return True
        time.sleep(0.05)
    return False


def smbclient(samba, command: str) -> None:
    proc = samba.smbclient("plain", command)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.quiet  # counts nothing sent in a window timed against actimeo
def test_names_answered_past_actimeo_until_another_clients_create(mounted, samba,
                                                                 request, tmp_path):
    top = f"dl-create-{request.node.callspec.id}"
    here = leased(samba, mounted, top, {"a": b"1"})
    with In(here) as cwd:
        time.sleep(1.1)  # past actimeo: without the lease each name would be asked
        before = counts(mounted)[0]
        for name in ("m1", "m2", "m3"):
            with pytest.raises(FileNotFoundError):
                cwd.stat(name)
        assert counts(mounted)[0] == before  # all three from the leased listing

    broken = leases(mounted)[2]
    local = tmp_path / "theirs"
    local.write_bytes(b"made by another client")
    smbclient(samba, f"put {local} {top}/theirs")
    assert broken_after(mounted, broken), "the create broke no lease of ours"
    # Never looked up before: the kernel asks, and the listing the break dropped is
    # not what answers.
    assert (here / "theirs").read_bytes() == b"made by another client"


def test_another_clients_rename_and_delete_break_the_lease(mounted, samba, request):
    top = f"dl-rename-{request.node.callspec.id}"
    here = leased(samba, mounted, top, {"old": b"1", "doomed": b"2"})
    broken = leases(mounted)[2]
    smbclient(samba, f"rename {top}/old {top}/new")
    assert broken_after(mounted, broken)
    assert (here / "new").read_bytes() == b"1"

    time.sleep(1.1)  # listed again (a lease again) once the kernel asks
    with pytest.raises(FileNotFoundError):
        os.stat(here / "missing-3")
    broken = leases(mounted)[2]
    smbclient(samba, f"rm {top}/doomed")
    assert broken_after(mounted, broken)
    time.sleep(1.1)  # the kernel's own entry for it lasts actimeo
    assert not (here / "doomed").exists()
    assert sorted(os.listdir(here)) == ["new"]


@pytest.mark.quiet  # counts nothing sent in a window timed against actimeo
def test_our_own_changes_keep_our_lease(mounted, samba, request):
    """Creates, writes, renames, removals and mkdirs made through the mount name the
    directory's lease as their parent's (ParentLeaseKey): none breaks it, and past
    actimeo its names are still answered here."""
    top = f"dl-own-{request.node.callspec.id}"
    here = leased(samba, mounted, top, {"a": b"1"})
    _, taken, broken = leases(mounted)
    (here / "made").write_bytes(b"made here")
    (here / "made").rename(here / "moved")
    (here / "a").unlink()
    (here / "sub").mkdir()
    os.utime(here / "moved", ns=(10**18, 10**18))
    with In(here) as cwd:
        time.sleep(1.1)
        before = counts(mounted)[0]
        with pytest.raises(FileNotFoundError):
            cwd.stat("never")
        assert counts(mounted)[0] == before
        # (A name removed here is asked for: a case-sensitive server may hold another
        # spelling of it. fs/known.py)
        with pytest.raises(FileNotFoundError):
            cwd.stat("a")
    assert leases(mounted)[1:] == (taken, broken)
    assert (here / "moved").read_bytes() == b"made here"
    assert os.stat(here / "moved").st_mtime_ns == 10**18
    assert sorted(os.listdir(here)) == ["moved", "sub"]


@pytest.mark.quiet  # bounds the wait: < 2 s
def test_a_leased_directory_is_removed_and_renamed_at_once(mounted, samba, request):
    """Our own handle keeps the lease: it is let go before our rmdir or rename of the
    directory, which would otherwise wait on it; another client's wait only for our
    answer to the break."""
    top = f"dl-rm-{request.node.callspec.id}"
    on_server(samba, top)
    for sub in ("gone", "moving", "theirs"):
        on_server(samba, f"{top}/{sub}")
    for sub in ("gone", "moving", "theirs"):
        leased(samba, mounted, f"{top}/{sub}")
    assert leases(mounted)[0] >= 3
    started = time.monotonic()
    (mounted / top / "gone").rmdir()
    (mounted / top / "moving").rename(mounted / top / "moved")
    (mounted / top / "gone").mkdir()  # the name is free at once
    assert time.monotonic() - started < 2.0
    assert os.listdir(mounted / top / "moved") == []
    started = time.monotonic()
    smbclient(samba, f"rmdir {top}/theirs")
    assert time.monotonic() - started < 5.0  # not the server's 35 s break timeout
    time.sleep(1.1)
    assert sorted(os.listdir(mounted / top)) == ["gone", "moved"]


def test_our_rename_of_a_directory_with_a_leased_one_beneath(mounted, samba, request):
    """Samba refuses to rename a directory while the renaming client has a handle open
    beneath it: the leases beneath are let go first."""
    top = f"dl-mv-{request.node.callspec.id}"
    on_server(samba, top)
    on_server(samba, f"{top}/p")
    on_server(samba, f"{top}/p/c")
    on_server(samba, f"{top}/p/c/f", b"deep")
    leased(samba, mounted, f"{top}/p/c")
    held = leases(mounted)[0]
    (mounted / top / "p").rename(mounted / top / "q")
    assert leases(mounted)[0] < held
    assert (mounted / top / "q" / "c" / "f").read_bytes() == b"deep"
    assert not (mounted / top / "p").exists()


def test_another_clients_rename_above_breaks_the_lease(mounted, samba, request):
    """A rename of a directory above a leased one breaks its lease (the server needs our
    handle out of the way): a directory made again at the old path is seen as it is."""
    top = f"dl-above-{request.node.callspec.id}"
    on_server(samba, top)
    on_server(samba, f"{top}/p")
    on_server(samba, f"{top}/p/c")
    here = leased(samba, mounted, f"{top}/p/c")
    broken = leases(mounted)[2]
    smbclient(samba, f"rename {top}/p {top}/old")
    assert broken_after(mounted, broken)
    smbclient(samba, f"mkdir {top}/p; mkdir {top}/p/c; mkdir {top}/p/c/new")
    time.sleep(1.1)  # the kernel's own entries last actimeo
    assert os.listdir(here) == ["new"]
    assert os.stat(here / "new").st_mode & 0o40000


@pytest.mark.quiet  # counts nothing sent in a window timed against actimeo
def test_a_path_walked_again_past_actimeo_costs_nothing(mounted, samba, request):
    """The kernel looks up each directory of a path again once actimeo has passed (tar
    x, make): with both a directory and its parent leased, that lookup and the
    directory's attributes are answered here."""
    top = f"dl-walk-{request.node.callspec.id}"
    on_server(samba, top)
    on_server(samba, f"{top}/a")
    on_server(samba, f"{top}/a/b")
    for path in (top, f"{top}/a", f"{top}/a/b"):
        leased(samba, mounted, path)
    with In(mounted / top) as cwd:
        # Once more, so that each directory's attributes are from after its own lease.
        time.sleep(1.1)
        cwd.stat("a/b")
        time.sleep(1.1)
        before = counts(mounted)[0]
        cwd.stat("a/b")
        with pytest.raises(FileNotFoundError):
            cwd.stat("a/b/missing")
        assert counts(mounted)[0] == before
