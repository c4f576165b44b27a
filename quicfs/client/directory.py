"""Listing a directory page by page with QUERY_DIRECTORY (MS-SMB2 3.2.4.17)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quicfs.client.open import FileStat, Open
from quicfs.smb2.constants import FileInfoClass, QueryDirectoryFlags
from quicfs.smb2.directory import (
    QueryDirectoryRequest,
    QueryDirectoryResponse,
    parse_directory_entries,
)
from quicfs.smb2.status import Status

#: One page of entries; a large buffer means fewer round trips for huge directories.
PAGE_BYTES = 64 * 1024

DirEntry = FileStat


class DirectoryReader:
    """The entries of an open directory, one server page at a time (without ``.`` and
    ``..``): a caller that stops early has fetched only the pages it used."""

    def __init__(self, handle: Open, pattern: str = "*") -> None:
        params = handle.tree.conn.params
        assert params is not None
        self.handle = handle
        self.pattern = pattern
        self.page = min(PAGE_BYTES, params.max_transact_size)
        self.done = False
        self._flags = QueryDirectoryFlags.RESTART_SCANS

    async def next_page(self) -> list[DirEntry]:
        """The next entries; an empty list once the directory is exhausted."""
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
            entries = [
                FileStat.from_info(e.name, e, file_id=e.file_id)
                for e in parse_directory_entries(buffer, FileInfoClass.ID_BOTH_DIRECTORY)
                if e.name not in (".", "..")
            ]
            if entries:  # a page of only "." and ".." asks for the next
                return entries
        return []


async def iter_directory(handle: Open, pattern: str = "*") -> AsyncIterator[DirEntry]:
    reader = DirectoryReader(handle, pattern)
    while page := await reader.next_page():
        for entry in page:
            yield entry
