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


async def iter_directory(handle: Open, pattern: str = "*") -> AsyncIterator[DirEntry]:
    params = handle.tree.conn.params
    assert params is not None
    page = min(PAGE_BYTES, params.max_transact_size)
    flags = QueryDirectoryFlags.RESTART_SCANS
    while True:
        reply = await handle.tree.request(
            QueryDirectoryRequest(
                info_class=FileInfoClass.ID_BOTH_DIRECTORY, flags=flags, file_index=0,
                file_id=handle.file_id, pattern=pattern, output_buffer_length=page,
            ),
            allowed=(Status.NO_MORE_FILES,),
        )
        if reply.status == Status.NO_MORE_FILES:
            return
        flags = QueryDirectoryFlags.NONE
        buffer = QueryDirectoryResponse.unpack(reply.message).buffer
        for e in parse_directory_entries(buffer, FileInfoClass.ID_BOTH_DIRECTORY):
            if e.name in (".", ".."):
                continue
            yield FileStat.from_info(e.name, e, file_id=e.file_id)
