"""Names and attributes a hostile server sends are screened before the kernel sees them
(fs/screen.py): crafted QUERY_DIRECTORY buffers and stat results go through the real
DirectoryReader and the FUSE operations; only the kernel's side (readdir_reply) and the
wire are stood in for."""

from __future__ import annotations

import logging
import os
import stat
from types import SimpleNamespace
from typing import Any

import pyfuse3
import pytest
import trio

from quicfs.client.open import FileStat
from quicfs.fs import screen, symlinks
from quicfs.fs.operations import Operations
from quicfs.options import Options
from quicfs.smb2.constants import FileAttributes, FileInfoClass
from quicfs.smb2.directory import DirectoryEntry, QueryDirectoryResponse, pack_directory_entries
from quicfs.smb2.filetime import EPOCH_DELTA
from quicfs.smb2.status import Status
from quicfs.smb2.wire import HEADER_SIZE

#: 2020-01-01, as a FILETIME.
SANE_TIME = EPOCH_DELTA + 1_577_836_800 * 10_000_000


def _entry(name: str, *, size: int = 5, time: int = SANE_TIME, file_id: int = 0,
           attributes: FileAttributes = FileAttributes.ARCHIVE) -> DirectoryEntry:
    return DirectoryEntry(name, creation_time=time, last_access_time=time,
                          last_write_time=time, change_time=time, end_of_file=size,
                          allocation_size=size, file_attributes=attributes,
                          file_id=file_id)


class _Tree:
    """Answers QUERY_DIRECTORY with the pages given, then STATUS_NO_MORE_FILES."""

    def __init__(self, pages: list[list[DirectoryEntry]]) -> None:
        self.pages = list(pages)
        self.conn = SimpleNamespace(params=SimpleNamespace(max_transact_size=1 << 20))
        self.max_dir_entries = 1000

    async def request(self, req: Any, allowed: Any = ()) -> Any:
        if not self.pages:
            return SimpleNamespace(status=Status.NO_MORE_FILES, message=b"")
        buffer = pack_directory_entries(self.pages.pop(0), FileInfoClass.ID_BOTH_DIRECTORY)
        # U+FFFF stands for a lone surrogate (invalid UTF-16), which nothing packs.
        buffer = buffer.replace("\uffff".encode("utf-16-le"), b"\x00\xd8")
        body = QueryDirectoryResponse(memoryview(buffer)).pack()
        return SimpleNamespace(status=Status.SUCCESS, message=bytes(HEADER_SIZE) + body)


class _Dir:
    def __init__(self, tree: _Tree) -> None:
        self.tree = tree
        self.file_id = None
        self.created = _entry("", size=0, attributes=FileAttributes.DIRECTORY)

    async def close(self) -> None:
        pass


class _Share:
    def __init__(self, pages: list[list[DirectoryEntry]] = (), stat: FileStat | None = None
                 ) -> None:
        self.url = SimpleNamespace(path="")
        self.leases = None
        self.uplink = None
        # No directory leases: what a lookup lists lasts actimeo.
        self.dir_leases = SimpleNamespace(alive=lambda lease: False,
                                          covers=lambda path, since: False,
                                          current=lambda path: None)
        self._pages = pages
        self._stat = stat

    async def open_listing(self, path: str) -> tuple[_Dir, list]:
        return _Dir(_Tree(self._pages)), []  # no pages with the open: the reader asks

    async def list_whole(self, path: str, page: int, **_: Any) -> None:
        return None  # as a directory too big to list for a lookup: the name is asked

    async def stat(self, path: str, **_: Any) -> FileStat:
        assert self._stat is not None
        return self._stat


async def _list(share: _Share, monkeypatch: pytest.MonkeyPatch
                ) -> list[tuple[bytes, pyfuse3.EntryAttributes]]:
    """What readdir hands the kernel for the root, read to the end."""
    async with trio.open_nursery() as nursery:
        return await _list_with(Operations(share, Options(), nursery),  # type: ignore[arg-type]
                                monkeypatch)


async def _list_with(ops: Operations, monkeypatch: pytest.MonkeyPatch
                     ) -> list[tuple[bytes, pyfuse3.EntryAttributes]]:
    given: list[tuple[bytes, pyfuse3.EntryAttributes]] = []

    def reply(token: object, name: bytes, attrs: pyfuse3.EntryAttributes, nxt: int) -> bool:
        given.append((name, attrs))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)
    ctx = SimpleNamespace(pid=os.getpid(), uid=0, gid=0, umask=0o022)
    fh = await ops.opendir(1, ctx)
    await ops.readdir(fh, 0, object())
    await ops.releasedir(fh)
    return given


BAD_NAMES = ["", "a/b", "nul\0x", "back\\slash", ".", "..", "x" * 256, "é" * 128,
             "lone\uffff"]


async def test_bad_names_are_skipped_and_the_rest_is_listed(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "quicfs")
    # Two pages: the kinds come back in the second, and a page of only bad names (the
    # third) must not end the listing.
    pages = [[_entry("first"), *(_entry(n) for n in BAD_NAMES), _entry("x" * 255)],
             [*(_entry(n) for n in BAD_NAMES), _entry("é" * 127 + "e")],
             [_entry("a/c"), _entry("")],
             [_entry("last")]]
    given = await _list(_Share(pages), monkeypatch)
    assert [name for name, _ in given] == [
        b".", b"..", b"first", b"x" * 255, ("é" * 127 + "e").encode(), b"last"]
    assert all(a.st_size == 5 for _, a in given[2:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Each kind once (the log is the server's to flood otherwise), naming the entry.
    # ("." and ".." the client's reader drops before: they are ours to list.)
    assert sorted(w.split(" (entry skipped)")[0] for w in warnings) == sorted(
        f"listing with {kind}" for kind in (
            "an empty name", "a name with '/'", "a name with NUL", "a name with '\\'",
            "a name over 255 bytes", "a name that is not UTF-16"))
    assert "listing with a name with NUL (entry skipped): in /: 'nul\\x00x'" in warnings
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_sizes_and_times_out_of_range_are_bounded_in_a_listing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "quicfs")
    pages = [[_entry("huge", size=2**63), _entry("max", size=2**64 - 1),
              _entry("future", time=2**64 - 1), _entry("fine", size=7)]]
    given = await _list(_Share(pages), monkeypatch)
    attrs = {name: a for name, a in given}
    assert list(attrs) == [b".", b"..", b"huge", b"max", b"future", b"fine"]
    assert attrs[b"huge"].st_size == attrs[b"max"].st_size == 2**63 - 1
    assert attrs[b"huge"].st_blocks == (2**63 - 1) // 512
    assert attrs[b"future"].st_mtime_ns == screen.MAX_TIME_NS
    assert attrs[b"fine"].st_size == 7 and attrs[b"fine"].st_mtime_ns == 1_577_836_800 * 10**9
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(":")[0] for w in warnings] == [
        "attributes with a size of 2^63 or more (bounded)",
        "attributes with a time past what a FILETIME says (bounded)"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_lookup_with_a_size_past_off_t_answers() -> None:
    st = FileStat("big", 2**64 - 1, 2**64 - 1, FileAttributes.ARCHIVE, 0, 0, -(2**70),
                  0, file_id=7, nlink=2**40)
    async with trio.open_nursery() as nursery:
        ops = Operations(_Share(stat=st), Options(), nursery)  # type: ignore[arg-type]
        entry = await ops.lookup(1, b"big", SimpleNamespace(pid=os.getpid()))
    assert (entry.st_ino, entry.st_size, entry.st_nlink) == (7, 2**63 - 1, 2**32 - 1)
    assert entry.st_mtime_ns == screen.MIN_TIME_NS
    assert stat.S_ISREG(entry.st_mode)


def test_bad_name_kinds() -> None:
    assert screen.bad_name("ok name.txt") is None
    assert screen.bad_name("é" * 127 + "e") is None
    assert screen.bad_name("\ud800") == "a name that is not UTF-16"
    assert screen.bad_name("x\udcff") == "a name that is not UTF-16"
    assert screen.bad_name("x" * 256) == "a name over 255 bytes"


def test_a_link_target_with_nul_is_no_link() -> None:
    """readlink hands libfuse a C string: a NUL would cut the target short."""
    good = symlinks.encode(b"dir/file")
    assert symlinks.decode(good) == b"dir/file"
    assert symlinks.decode(symlinks.encode(b"safe\0/etc/shadow")) is None
