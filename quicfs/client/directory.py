"""Listing a directory page by page with QUERY_DIRECTORY (MS-SMB2 3.2.4.17).

A listing ends when the server says STATUS_NO_MORE_FILES; one that never does (a hostile
server) is cut off past the tree's ``max_dir_entries`` entries, or past as many KiB of
answers (pages of "." and ".." only, or empty ones, bring no entries), with LimitExceeded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence

from quicfs.client.connection import Reply
from quicfs.client.open import FileStat, Open
from quicfs.client.tree import Tree
from quicfs.errors import LimitExceeded, SMBError
from quicfs.smb2.constants import FileInfoClass, QueryDirectoryFlags
from quicfs.smb2.directory import (
    DirectoryEntry,
    QueryDirectoryRequest,
    QueryDirectoryResponse,
    parse_directory_entries,
)
from quicfs.smb2.fileid import FileId
from quicfs.smb2.status import Status, is_error

#: One page of entries; a large buffer means fewer round trips for big directories:
#: ~1,700 entries of 20-character names (4 credits).
PAGE_BYTES = 256 * 1024
#: Pages asked for with the directory's CREATE (Share.open_listing): the second says
#: whether the first held everything, so a directory of up to a page is listed in
#: one round trip.
FIRST_PAGES = 2
#: Bytes of answers a listing may bring per entry it may bring. An entry of
#: FileIdBothDirectoryInformation is 104 bytes and a name of at most 255 UTF-16 units
#: (MS-FSCC 2.4.17): an honest listing meets the entry bound first.
BYTES_PER_ENTRY = 1024

DirEntry = FileStat


class DirectoryReader:
    """The entries of an open directory, one server page at a time (without ``.`` and
    ``..``): a caller that stops early has fetched only the pages it used."""

    def __init__(self, handle: Open, pattern: str = "*", *,
                 max_entries: int | None = None, answered: Sequence[Reply] = ()) -> None:
        """``answered``: replies to the first pages' requests (page_requests), sent
        with the directory's CREATE."""
        self.handle = handle
        self.pattern = pattern
        self.page = page_bytes(handle.tree)
        self.done = False
        self._answered = deque(answered)
        self._flags = QueryDirectoryFlags.NONE if answered else \
            QueryDirectoryFlags.RESTART_SCANS
        self.max_entries = handle.tree.max_dir_entries if max_entries is None else max_entries
        #: What this listing has brought so far: entries (with "." and ".."), bytes.
        self.entries = 0
        self.bytes = 0

    async def next_page(self) -> list[DirEntry]:
        """The next entries; an empty list once the directory is exhausted."""
        self._check()  # past the bound it stays failed, and asks the server no more
        while not self.done:
            if self._answered:
                reply = self._answered.popleft()
                if is_error(reply.status) and reply.status != Status.NO_MORE_FILES:
                    self._answered.clear()
                    raise SMBError(reply.status)
            else:
                reply = await self.handle.tree.request(
                    _page(self.handle.file_id, self.pattern, self._flags, self.page),
                    allowed=(Status.NO_MORE_FILES,),
                )
            if reply.status == Status.NO_MORE_FILES:
                self.done = True
                break
            self._flags = QueryDirectoryFlags.NONE
            parsed = _parse(reply)
            self.entries += len(parsed)
            self.bytes += len(reply.message)
            self._check()
            entries = _stats(parsed)
            if entries:  # a page of only "." and ".." asks for the next
                return entries
        return []

    def _check(self) -> None:
        if _over(self.entries, self.bytes, self.max_entries):
            raise _limit(self.handle.name, self.entries, self.bytes, self.max_entries)


def whole_listing(name: str, replies: Sequence[Reply], max_entries: int
                  ) -> list[DirEntry] | None:
    """The entries the replies to page_requests bring, when they reach the directory's
    end (STATUS_NO_MORE_FILES); None when it goes on past them. For a listing whose
    handle was closed in the same compound: nothing more can be asked."""
    entries: list[DirEntry] = []
    count = size = 0
    for reply in replies:
        if reply.status == Status.NO_MORE_FILES:
            return entries
        if is_error(reply.status):
            raise SMBError(reply.status)
        parsed = _parse(reply)
        count += len(parsed)
        size += len(reply.message)
        if _over(count, size, max_entries):
            raise _limit(name, count, size, max_entries)
        entries += _stats(parsed)
    return None


def _parse(reply: Reply) -> list[DirectoryEntry]:
    buffer = QueryDirectoryResponse.unpack(reply.message).buffer
    return parse_directory_entries(buffer, FileInfoClass.ID_BOTH_DIRECTORY)


def _stats(parsed: list[DirectoryEntry]) -> list[DirEntry]:
    return [FileStat.from_info(e.name, e, file_id=e.file_id)
            for e in parsed if e.name not in (".", "..")]


def _over(entries: int, size: int, max_entries: int) -> bool:
    return entries > max_entries or size > max_entries * BYTES_PER_ENTRY


def _limit(name: str, entries: int, size: int, max_entries: int) -> LimitExceeded:
    return LimitExceeded(f"listing of {name or '/'} passed {max_entries} entries "
                         f"({entries} entries, {size} bytes; mount option max_dir_entries=)")


def page_bytes(tree: Tree) -> int:
    """Bytes asked for per page: PAGE_BYTES, or what the server takes at most."""
    params = tree.conn.params
    assert params is not None
    return min(PAGE_BYTES, params.max_transact_size)


def _page(file_id: FileId, pattern: str, flags: QueryDirectoryFlags,
          length: int) -> QueryDirectoryRequest:
    return QueryDirectoryRequest(info_class=FileInfoClass.ID_BOTH_DIRECTORY, flags=flags,
                                 file_index=0, file_id=file_id, pattern=pattern,
                                 output_buffer_length=length)


def page_requests(length: int, pattern: str = "*", *,
                  file_id: FileId | None = None) -> list[QueryDirectoryRequest]:
    """The first FIRST_PAGES pages' requests, from the start, as a related compound
    (MS-SMB2 3.2.4.1.4): to follow a directory's CREATE, they act on the FileId it
    opens; given ``file_id`` (a directory open already), the first names it."""
    return [_page(file_id if i == 0 and file_id is not None else FileId.related(), pattern,
                  QueryDirectoryFlags.RESTART_SCANS if i == 0 else QueryDirectoryFlags.NONE,
                  length) for i in range(FIRST_PAGES)]


async def iter_directory(handle: Open, pattern: str = "*", *,
                         answered: Sequence[Reply] = ()) -> AsyncIterator[DirEntry]:
    reader = DirectoryReader(handle, pattern, answered=answered)
    while page := await reader.next_page():
        for entry in page:
            yield entry
