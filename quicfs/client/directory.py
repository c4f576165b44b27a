"""Listing a directory page by page with QUERY_DIRECTORY (MS-SMB2 3.2.4.17).

A listing ends when the server says STATUS_NO_MORE_FILES; one that never does (a hostile
server) is cut off past the tree's ``max_dir_entries`` entries, or past as many KiB of
answers (pages of "." and ".." only, or empty ones, bring no entries), with LimitExceeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quicfs.client.open import FileStat, Open
from quicfs.errors import LimitExceeded
from quicfs.smb2.constants import FileInfoClass, QueryDirectoryFlags
from quicfs.smb2.directory import (
    QueryDirectoryRequest,
    QueryDirectoryResponse,
    parse_directory_entries,
)
from quicfs.smb2.status import Status

#: One page of entries; a large buffer means fewer round trips for huge directories.
PAGE_BYTES = 64 * 1024
#: Bytes of answers a listing may bring per entry it may bring. An entry of
#: FileIdBothDirectoryInformation is 104 bytes and a name of at most 255 UTF-16 units
#: (MS-FSCC 2.4.17): an honest listing meets the entry bound first.
BYTES_PER_ENTRY = 1024

DirEntry = FileStat


class DirectoryReader:
    """The entries of an open directory, one server page at a time (without ``.`` and
    ``..``): a caller that stops early has fetched only the pages it used."""

    def __init__(self, handle: Open, pattern: str = "*", *,
                 max_entries: int | None = None) -> None:
        params = handle.tree.conn.params
        assert params is not None
        self.handle = handle
        self.pattern = pattern
        self.page = min(PAGE_BYTES, params.max_transact_size)
        self.done = False
        self._flags = QueryDirectoryFlags.RESTART_SCANS
        self.max_entries = handle.tree.max_dir_entries if max_entries is None else max_entries
        #: What this listing has brought so far: entries (with "." and ".."), bytes.
        self.entries = 0
        self.bytes = 0

    async def next_page(self) -> list[DirEntry]:
        """The next entries; an empty list once the directory is exhausted."""
        self._check()  # past the bound it stays failed, and asks the server no more
        while not self.done:
            reply = await self.handle.tree.request(
                QueryDirectoryRequest(
                    info_class=FileInfoClass.ID_BOTH_DIRECTORY, flags=self._flags,
                    file_index=0, file_id=self.handle.file_id, pattern=self.pattern,
                    output_buffer_length=self.page,
                ),
                allowed=(Status.NO_MORE_FILES,),
            )
            if reply.status == Status.NO_MORE_FILES:
                self.done = True
                break
            self._flags = QueryDirectoryFlags.NONE
            buffer = QueryDirectoryResponse.unpack(reply.message).buffer
            parsed = parse_directory_entries(buffer, FileInfoClass.ID_BOTH_DIRECTORY)
            self.entries += len(parsed)
            self.bytes += len(reply.message)
            self._check()
            entries = [FileStat.from_info(e.name, e, file_id=e.file_id)
                       for e in parsed if e.name not in (".", "..")]
            if entries:  # a page of only "." and ".." asks for the next
                return entries
        return []

    def _check(self) -> None:
        if self.entries > self.max_entries or self.bytes > self.max_entries * BYTES_PER_ENTRY:
            raise LimitExceeded(
                f"listing of {self.handle.name or '/'} passed {self.max_entries} entries "
                f"({self.entries} entries, {self.bytes} bytes; mount option max_dir_entries=)")


async def iter_directory(handle: Open, pattern: str = "*") -> AsyncIterator[DirEntry]:
    reader = DirectoryReader(handle, pattern)
    while page := await reader.next_page():
        for entry in page:
            yield entry
