"""QUERY_DIRECTORY (MS-SMB2 2.2.33, 2.2.34) and the directory entries it returns
(MS-FSCC 2.4: FileDirectoryInformation, FileFullDirectoryInformation,
FileBothDirectoryInformation, FileIdFullDirectoryInformation,
FileIdBothDirectoryInformation, FileNamesInformation)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from quicfs.smb2.constants import Command, FileAttributes, FileInfoClass, QueryDirectoryFlags
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.fileid import FileId
from quicfs.smb2.wire import HEADER_SIZE, Reader, encode_utf16, utf16

_REQ_FIXED = 32  # 2.2.33: StructureSize 33
_RESP_FIXED = 8  # 2.2.34: StructureSize 9


@dataclass(frozen=True, slots=True)
class QueryDirectoryRequest:
    """2.2.33 SMB2 QUERY_DIRECTORY Request; ``pattern`` may use ``*`` and ``?``."""

    command: ClassVar[Command] = Command.QUERY_DIRECTORY
    file_id: FileId
    pattern: str = "*"
    info_class: FileInfoClass | int = FileInfoClass.ID_BOTH_DIRECTORY
    flags: QueryDirectoryFlags = QueryDirectoryFlags.NONE
    file_index: int = 0
    output_buffer_length: int = 65536

    @property
    def payload_size(self) -> int:
        return self.output_buffer_length

    def pack(self) -> bytes:
        name = encode_utf16(self.pattern)
        fixed = struct.pack(
            "<HBBI", _REQ_FIXED + 1, int(self.info_class), int(self.flags), self.file_index,
        ) + self.file_id.pack() + struct.pack(
            "<HHI", HEADER_SIZE + _REQ_FIXED, len(name), self.output_buffer_length,
        )
        return fixed + (name or b"\0")


@dataclass(frozen=True, slots=True)
class QueryDirectoryResponse:
    """2.2.34 SMB2 QUERY_DIRECTORY Response; ``buffer`` is a view into the message."""

    buffer: memoryview

    def pack(self) -> bytes:
        """The body as a server sends it, the buffer at offset 72."""
        return struct.pack("<HHI", _RESP_FIXED + 1, HEADER_SIZE + _RESP_FIXED,
                           len(self.buffer)) + (bytes(self.buffer) or b"\0")

    def entries(self, info_class: FileInfoClass | int) -> list[DirectoryEntry]:
        return parse_directory_entries(self.buffer, info_class)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> QueryDirectoryResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != _RESP_FIXED + 1:
            raise MalformedError(f"QUERY_DIRECTORY response StructureSize {size}, expected 9")
        offset, length = r.u16(), r.u32()
        if not length:
            return cls(memoryview(b""))
        if offset < HEADER_SIZE + _RESP_FIXED:
            raise MalformedError(f"QUERY_DIRECTORY buffer at offset {offset} overlaps the body")
        return cls(r.slice(offset, length))


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One entry of any supported directory class; fields a class lacks stay 0/"".

    Times are FILETIMEs; ``file_id`` is the 8-byte FileId of the Id* classes (the
    server's inode number, 0 when unknown).
    """

    name: str
    file_index: int = 0
    creation_time: int = 0
    last_access_time: int = 0
    last_write_time: int = 0
    change_time: int = 0
    end_of_file: int = 0
    allocation_size: int = 0
    file_attributes: FileAttributes = FileAttributes.NONE
    ea_size: int = 0
    file_id: int = 0
    short_name: str = ""

    @property
    def is_dir(self) -> bool:
        return bool(self.file_attributes & FileAttributes.DIRECTORY)


#: Size of the fixed part (everything before FileName) of each class.
_FIXED = {
    FileInfoClass.DIRECTORY: 64,  # MS-FSCC 2.4.10
    FileInfoClass.FULL_DIRECTORY: 68,  # MS-FSCC 2.4.14
    FileInfoClass.BOTH_DIRECTORY: 94,  # MS-FSCC 2.4.8
    FileInfoClass.ID_FULL_DIRECTORY: 80,  # MS-FSCC 2.4.18
    FileInfoClass.ID_BOTH_DIRECTORY: 104,  # MS-FSCC 2.4.17
    FileInfoClass.NAMES: 12,  # MS-FSCC 2.4.28
}

SUPPORTED_CLASSES = frozenset(_FIXED)


def _entry(r: Reader, pos: int, end: int, info_class: int) -> DirectoryEntry:
    """Decode the entry at ``pos`` whose bytes end at ``end`` (exclusive)."""
    fixed = _FIXED[info_class]  # type: ignore[index]
    if pos + fixed > end:
        raise MalformedError(f"directory entry at {pos} shorter than its {fixed} fixed bytes")
    r.seek(pos + 4)  # past NextEntryOffset
    file_index = r.u32()
    if info_class == FileInfoClass.NAMES:
        name_len = r.u32()
        return DirectoryEntry(_name(r, pos + fixed, name_len, end), file_index)
    times = (r.u64(), r.u64(), r.u64(), r.u64())
    eof, allocation = r.u64(), r.u64()
    attributes = FileAttributes(r.u32())
    name_len = r.u32()
    ea_size = file_id = 0
    short_name = ""
    if info_class != FileInfoClass.DIRECTORY:
        ea_size = r.u32()
    if info_class in (FileInfoClass.BOTH_DIRECTORY, FileInfoClass.ID_BOTH_DIRECTORY):
        short_len = r.u8()
        r.skip(1)
        short = r.view(24)
        if short_len > 24:
            raise MalformedError(f"directory entry short name of {short_len} bytes")
        short_name = utf16(short[:short_len], lone_surrogates=True)
        if info_class == FileInfoClass.ID_BOTH_DIRECTORY:
            r.skip(2)
            file_id = r.u64()
    elif info_class == FileInfoClass.ID_FULL_DIRECTORY:
        r.skip(4)
        file_id = r.u64()
    name = _name(r, pos + fixed, name_len, end)
    return DirectoryEntry(name, file_index, *times, eof, allocation, attributes, ea_size,
                          file_id, short_name)


def _name(r: Reader, offset: int, length: int, end: int) -> str:
    if offset + length > end:
        raise MalformedError(f"directory entry name of {length} bytes runs past its entry")
    # A name that is not UTF-16 costs its entry (fs/screen.py), not the whole page.
    return utf16(r.slice(offset, length), lone_surrogates=True)


def parse_directory_entries(
    buf: bytes | memoryview, info_class: FileInfoClass | int
) -> list[DirectoryEntry]:
    """Every entry of a QUERY_DIRECTORY output buffer, in order.

    The NextEntryOffset chain is checked: each entry and its name lie inside the buffer,
    each offset is a positive multiple of 8 that leaves room for the next fixed part.
    ``.`` and ``..`` are returned like any other entry.
    """
    if info_class not in _FIXED:
        raise ValueError(f"unsupported directory information class {info_class}")
    r = Reader(buf)
    out: list[DirectoryEntry] = []
    if not len(r):
        return out
    pos = 0
    while True:
        r.seek(pos)
        nxt = r.u32()
        if nxt:
            if nxt % 8 or pos + nxt >= len(r):
                raise MalformedError(f"directory NextEntryOffset {nxt} at offset {pos}")
            end = pos + nxt
        else:
            end = len(r)
        out.append(_entry(r, pos, end, info_class))
        if not nxt:
            return out
        pos = end


def pack_directory_entries(
    entries: list[DirectoryEntry], info_class: FileInfoClass | int
) -> bytes:
    """The inverse of :func:`parse_directory_entries`, entries 8-byte aligned (what a
    server sends; used by tests and the in-memory test server)."""
    if info_class not in _FIXED:
        raise ValueError(f"unsupported directory information class {info_class}")
    fixed = _FIXED[info_class]  # type: ignore[index]
    out = bytearray()
    for i, e in enumerate(entries):
        name = encode_utf16(e.name)
        body = bytearray(struct.pack("<I", e.file_index))
        if info_class == FileInfoClass.NAMES:
            body += struct.pack("<I", len(name))
        else:
            body += struct.pack(
                "<QQQQQQII", e.creation_time, e.last_access_time, e.last_write_time,
                e.change_time, e.end_of_file, e.allocation_size, int(e.file_attributes),
                len(name),
            )
            if info_class != FileInfoClass.DIRECTORY:
                body += struct.pack("<I", e.ea_size)
            if info_class in (FileInfoClass.BOTH_DIRECTORY, FileInfoClass.ID_BOTH_DIRECTORY):
                short = encode_utf16(e.short_name)
                if len(short) > 24:
                    raise ValueError("short name longer than 12 characters")
                body += struct.pack("<BB", len(short), 0) + short.ljust(24, b"\0")
                if info_class == FileInfoClass.ID_BOTH_DIRECTORY:
                    body += struct.pack("<HQ", 0, e.file_id)
            elif info_class == FileInfoClass.ID_FULL_DIRECTORY:
                body += struct.pack("<IQ", 0, e.file_id)
        assert 4 + len(body) == fixed
        size = fixed + len(name)
        last = i == len(entries) - 1
        nxt = 0 if last else size + (-size % 8)
        out += struct.pack("<I", nxt) + body + name
        if not last:
            out += bytes(-size % 8)
    return bytes(out)
