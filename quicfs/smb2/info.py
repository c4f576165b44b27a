"""QUERY_INFO and SET_INFO (MS-SMB2 2.2.37 - 2.2.40) and the information classes a client
of a disk share needs (MS-FSCC 2.4 file, 2.5 file system).

Each information class carries ``info_type`` and ``info_class`` class variables, so
``SetInfoRequest.of(file_id, FileEndOfFileInformation(size))`` and
``QueryInfoRequest.of(file_id, FileAllInformation)`` need no other numbers. Decoders take the
OutputBuffer of a QUERY_INFO response and raise only :class:`MalformedError`.

MS-FSCC renumbers its 2.4 subsections between revisions; where a docstring gives only
"MS-FSCC 2.4", the structure's name is the reference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Protocol

from quicfs.smb2.constants import (
    AccessMask,
    Command,
    FileAttributes,
    FileInfoClass,
    FileSystemAttributes,
    FsInfoClass,
    InfoType,
)
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.fileid import FileId
from quicfs.smb2.wire import HEADER_SIZE, Reader, encode_utf16, utf16

_QUERY_FIXED = 40  # 2.2.37: StructureSize 41
_SET_FIXED = 32  # 2.2.39: StructureSize 33
_RESP_FIXED = 8  # 2.2.38: StructureSize 9


class InfoClass(Protocol):
    info_type: ClassVar[InfoType]
    info_class: ClassVar[int]


class PackableInfo(InfoClass, Protocol):
    def pack(self) -> bytes: ...


# ------------------------------------------------------------------------ QUERY_INFO
@dataclass(frozen=True, slots=True)
class QueryInfoRequest:
    """2.2.37 SMB2 QUERY_INFO Request.

    ``input_buffer`` is for quota and EA-list queries only; without it InputBufferOffset
    is 0.
    """

    command: ClassVar[Command] = Command.QUERY_INFO
    info_type: InfoType | int
    info_class: int
    file_id: FileId
    output_buffer_length: int = 65536
    additional_information: int = 0
    flags: int = 0
    input_buffer: bytes = b""

    @classmethod
    def of(cls, file_id: FileId, kind: type[InfoClass], output_buffer_length: int = 65536,
           additional_information: int = 0) -> QueryInfoRequest:
        return cls(kind.info_type, kind.info_class, file_id, output_buffer_length,
                   additional_information)

    @property
    def payload_size(self) -> int:
        return max(self.output_buffer_length, len(self.input_buffer))

    def pack(self) -> bytes:
        in_offset = HEADER_SIZE + _QUERY_FIXED if self.input_buffer else 0
        return struct.pack(
            "<HBBIHHIII", _QUERY_FIXED + 1, int(self.info_type), int(self.info_class),
            self.output_buffer_length, in_offset, 0, len(self.input_buffer),
            int(self.additional_information), int(self.flags),
        ) + self.file_id.pack() + (bytes(self.input_buffer) or b"\0")


@dataclass(frozen=True, slots=True)
class QueryInfoResponse:
    """2.2.38 SMB2 QUERY_INFO Response; ``buffer`` is a view into the message."""

    buffer: memoryview

    def pack(self) -> bytes:
        """The body as a server sends it, the buffer at offset 72."""
        return struct.pack("<HHI", _RESP_FIXED + 1, HEADER_SIZE + _RESP_FIXED,
                           len(self.buffer)) + (bytes(self.buffer) or b"\0")

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> QueryInfoResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != _RESP_FIXED + 1:
            raise MalformedError(f"QUERY_INFO response StructureSize {size}, expected 9")
        offset, length = r.u16(), r.u32()
        if not length:
            return cls(memoryview(b""))
        if offset < HEADER_SIZE + _RESP_FIXED:
            raise MalformedError(f"QUERY_INFO buffer at offset {offset} overlaps the body")
        return cls(r.slice(offset, length))


# -------------------------------------------------------------------------- SET_INFO
@dataclass(frozen=True, slots=True)
class SetInfoRequest:
    """2.2.39 SMB2 SET_INFO Request; the buffer follows the fixed part (offset 96)."""

    command: ClassVar[Command] = Command.SET_INFO
    info_type: InfoType | int
    info_class: int
    file_id: FileId
    buffer: bytes
    additional_information: int = 0

    @classmethod
    def of(cls, file_id: FileId, info: PackableInfo,
           additional_information: int = 0) -> SetInfoRequest:
        return cls(info.info_type, info.info_class, file_id, info.pack(),
                   additional_information)

    @property
    def payload_size(self) -> int:
        return len(self.buffer)

    def pack(self) -> bytes:
        return struct.pack(
            "<HBBIHHI", _SET_FIXED + 1, int(self.info_type), int(self.info_class),
            len(self.buffer), HEADER_SIZE + _SET_FIXED, 0, int(self.additional_information),
        ) + self.file_id.pack() + (bytes(self.buffer) or b"\0")


@dataclass(frozen=True, slots=True)
class SetInfoResponse:
    """2.2.40 SMB2 SET_INFO Response."""

    def pack(self) -> bytes:
        return struct.pack("<H", 2)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> SetInfoResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != 2:
            raise MalformedError(f"SET_INFO response StructureSize {size}, expected 2")
        return cls()


# ------------------------------------------------------------------ file information
def _name(r: Reader) -> str:
    """A FileNameLength (4 bytes) followed by that many bytes of UTF-16."""
    return utf16(r.view(r.u32()))


@dataclass(frozen=True, slots=True)
class FileBasicInformation:
    """MS-FSCC 2.4.7 FileBasicInformation (40 bytes).

    In a SET_INFO a time of 0 means "do not change", -1 "stop updating it on this
    handle", -2 "resume updating"; attributes 0 mean "do not change".
    """

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.BASIC
    creation_time: int = 0
    last_access_time: int = 0
    last_write_time: int = 0
    change_time: int = 0
    file_attributes: FileAttributes = FileAttributes.NONE

    def pack(self) -> bytes:
        return struct.pack(
            "<qqqqII", self.creation_time, self.last_access_time, self.last_write_time,
            self.change_time, int(self.file_attributes), 0,
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileBasicInformation:
        r = Reader(data)
        return cls(*_basic(r))


def _basic(r: Reader) -> tuple[int, int, int, int, FileAttributes]:
    times = r.i64(), r.i64(), r.i64(), r.i64()
    attributes = FileAttributes(r.u32())
    r.skip(4)
    return (*times, attributes)


@dataclass(frozen=True, slots=True)
class FileStandardInformation:
    """MS-FSCC 2.4 FileStandardInformation (24 bytes)."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.STANDARD
    allocation_size: int
    end_of_file: int
    number_of_links: int
    delete_pending: bool
    directory: bool

    def pack(self) -> bytes:
        return struct.pack("<QQIBBH", self.allocation_size, self.end_of_file,
                           self.number_of_links, self.delete_pending, self.directory, 0)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileStandardInformation:
        return _standard(Reader(data))


def _standard(r: Reader) -> FileStandardInformation:
    allocation, eof, links = r.u64(), r.u64(), r.u32()
    delete_pending, directory = bool(r.u8()), bool(r.u8())
    r.skip(2)
    return FileStandardInformation(allocation, eof, links, delete_pending, directory)


@dataclass(frozen=True, slots=True)
class FileInternalInformation:
    """MS-FSCC 2.4 FileInternalInformation: the file's 8-byte id (inode number)."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.INTERNAL
    index_number: int

    def pack(self) -> bytes:
        return struct.pack("<Q", self.index_number)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileInternalInformation:
        return cls(Reader(data).u64())


@dataclass(frozen=True, slots=True)
class FileNetworkOpenInformation:
    """MS-FSCC 2.4 FileNetworkOpenInformation (56 bytes)."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.NETWORK_OPEN
    creation_time: int
    last_access_time: int
    last_write_time: int
    change_time: int
    allocation_size: int
    end_of_file: int
    file_attributes: FileAttributes

    def pack(self) -> bytes:
        return struct.pack(
            "<qqqqQQII", self.creation_time, self.last_access_time, self.last_write_time,
            self.change_time, self.allocation_size, self.end_of_file,
            int(self.file_attributes), 0,
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileNetworkOpenInformation:
        r = Reader(data)
        times = r.i64(), r.i64(), r.i64(), r.i64()
        allocation, eof, attributes = r.u64(), r.u64(), FileAttributes(r.u32())
        r.skip(4)
        return cls(*times, allocation, eof, attributes)


@dataclass(frozen=True, slots=True)
class FileAttributeTagInformation:
    """MS-FSCC 2.4.6 FileAttributeTagInformation: attributes and the reparse tag."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.ATTRIBUTE_TAG
    file_attributes: FileAttributes
    reparse_tag: int

    def pack(self) -> bytes:
        return struct.pack("<II", int(self.file_attributes), self.reparse_tag)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileAttributeTagInformation:
        r = Reader(data)
        return cls(FileAttributes(r.u32()), r.u32())


_ALL_FIXED = 100  # MS-FSCC 2.4.2: every part up to FileNameLength included


@dataclass(frozen=True, slots=True)
class FileAllInformation:
    """MS-FSCC 2.4.2 FileAllInformation: Basic, Standard, Internal, EA, Access, Position,
    Mode, Alignment and Name information back to back.

    A server that runs out of output buffer returns STATUS_BUFFER_OVERFLOW with the name
    cut short while FileNameLength still gives the full length; the decoder then keeps the
    characters present and sets ``name_truncated``.
    """

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.ALL
    basic: FileBasicInformation
    standard: FileStandardInformation
    index_number: int
    ea_size: int
    access_flags: AccessMask
    current_byte_offset: int
    mode: int
    alignment_requirement: int
    name: str
    name_truncated: bool = False

    # Flat access to the parts a stat needs.
    @property
    def creation_time(self) -> int:
        return self.basic.creation_time

    @property
    def last_access_time(self) -> int:
        return self.basic.last_access_time

    @property
    def last_write_time(self) -> int:
        return self.basic.last_write_time

    @property
    def change_time(self) -> int:
        return self.basic.change_time

    @property
    def file_attributes(self) -> FileAttributes:
        return self.basic.file_attributes

    @property
    def allocation_size(self) -> int:
        return self.standard.allocation_size

    @property
    def end_of_file(self) -> int:
        return self.standard.end_of_file

    @property
    def number_of_links(self) -> int:
        return self.standard.number_of_links

    @property
    def delete_pending(self) -> bool:
        return self.standard.delete_pending

    @property
    def directory(self) -> bool:
        return self.standard.directory

    def pack(self) -> bytes:
        name = encode_utf16(self.name)
        return (
            self.basic.pack() + self.standard.pack()
            + struct.pack("<QIIQII", self.index_number, self.ea_size, int(self.access_flags),
                          self.current_byte_offset, self.mode, self.alignment_requirement)
            + struct.pack("<I", len(name)) + name
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileAllInformation:
        r = Reader(data)
        basic = FileBasicInformation(*_basic(r))
        standard = _standard(r)
        index, ea, access = r.u64(), r.u32(), AccessMask(r.u32())
        position, mode, alignment = r.u64(), r.u32(), r.u32()
        name_len = r.u32()
        present = min(name_len, r.remaining) & ~1
        name = utf16(r.view(present))
        return cls(basic, standard, index, ea, access, position, mode, alignment, name,
                   present < name_len)


@dataclass(frozen=True, slots=True)
class FileEndOfFileInformation:
    """MS-FSCC 2.4.13 FileEndOfFileInformation (SET_INFO: truncate or extend)."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.END_OF_FILE
    end_of_file: int

    def pack(self) -> bytes:
        return struct.pack("<Q", self.end_of_file)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileEndOfFileInformation:
        return cls(Reader(data).u64())


@dataclass(frozen=True, slots=True)
class FileAllocationInformation:
    """MS-FSCC 2.4.4 FileAllocationInformation (SET_INFO: reserve space)."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.ALLOCATION
    allocation_size: int

    def pack(self) -> bytes:
        return struct.pack("<Q", self.allocation_size)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileAllocationInformation:
        return cls(Reader(data).u64())


@dataclass(frozen=True, slots=True)
class FileDispositionInformation:
    """MS-FSCC 2.4.11 FileDispositionInformation: mark (or unmark) for delete on close."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.DISPOSITION
    delete_pending: bool = True

    def pack(self) -> bytes:
        return struct.pack("<B", 1 if self.delete_pending else 0)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileDispositionInformation:
        return cls(bool(Reader(data).u8()))


def _pack_rename(replace_if_exists: bool, root_directory: int, name: str) -> bytes:
    encoded = encode_utf16(name)
    # Like Windows and cifs.ko, follow the name with a UTF-16 NUL that FileNameLength does
    # not count: servers check the buffer against sizeof(FILE_RENAME_INFORMATION) (24).
    return struct.pack("<B7xQI", 1 if replace_if_exists else 0, root_directory,
                       len(encoded)) + encoded + b"\0\0"


def _unpack_rename(data: bytes | memoryview) -> tuple[bool, str, int]:
    r = Reader(data)
    replace = bool(r.u8())
    r.skip(7)
    root = r.u64()
    return replace, _name(r), root


@dataclass(frozen=True, slots=True)
class FileRenameInformation:
    """MS-FSCC 2.4 FileRenameInformation, FILE_RENAME_INFORMATION_TYPE_2 (the SMB2 form).

    Fields in wire order (ReplaceIfExists, FileName; RootDirectory last as it is always 0
    over SMB2). ``name`` is the new path relative to the share root (``\\`` separators, no leading
    ``\\``); RootDirectory is always 0 over SMB2.
    """

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.RENAME
    replace_if_exists: bool
    name: str
    root_directory: int = 0

    def pack(self) -> bytes:
        return _pack_rename(self.replace_if_exists, self.root_directory, self.name)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileRenameInformation:
        return cls(*_unpack_rename(data))


@dataclass(frozen=True, slots=True)
class FileLinkInformation:
    """MS-FSCC 2.4 FileLinkInformation, FILE_LINK_INFORMATION_TYPE_2: a hard link; same
    layout as rename."""

    info_type: ClassVar[InfoType] = InfoType.FILE
    info_class: ClassVar[int] = FileInfoClass.LINK
    replace_if_exists: bool
    name: str
    root_directory: int = 0

    def pack(self) -> bytes:
        return _pack_rename(self.replace_if_exists, self.root_directory, self.name)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileLinkInformation:
        return cls(*_unpack_rename(data))


# ------------------------------------------------------------ file system information
@dataclass(frozen=True, slots=True)
class FileFsSizeInformation:
    """MS-FSCC 2.5.8 FileFsSizeInformation."""

    info_type: ClassVar[InfoType] = InfoType.FILESYSTEM
    info_class: ClassVar[int] = FsInfoClass.SIZE
    total_allocation_units: int
    available_allocation_units: int
    sectors_per_allocation_unit: int
    bytes_per_sector: int

    @property
    def bytes_per_allocation_unit(self) -> int:
        return self.sectors_per_allocation_unit * self.bytes_per_sector

    def pack(self) -> bytes:
        return struct.pack("<QQII", self.total_allocation_units,
                           self.available_allocation_units, self.sectors_per_allocation_unit,
                           self.bytes_per_sector)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileFsSizeInformation:
        r = Reader(data)
        return cls(r.u64(), r.u64(), r.u32(), r.u32())


@dataclass(frozen=True, slots=True)
class FileFsFullSizeInformation:
    """MS-FSCC 2.5.4 FileFsFullSizeInformation."""

    info_type: ClassVar[InfoType] = InfoType.FILESYSTEM
    info_class: ClassVar[int] = FsInfoClass.FULL_SIZE
    total_allocation_units: int
    caller_available_allocation_units: int
    actual_available_allocation_units: int
    sectors_per_allocation_unit: int
    bytes_per_sector: int

    @property
    def bytes_per_allocation_unit(self) -> int:
        return self.sectors_per_allocation_unit * self.bytes_per_sector

    def pack(self) -> bytes:
        return struct.pack("<QQQII", self.total_allocation_units,
                           self.caller_available_allocation_units,
                           self.actual_available_allocation_units,
                           self.sectors_per_allocation_unit, self.bytes_per_sector)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileFsFullSizeInformation:
        r = Reader(data)
        return cls(r.u64(), r.u64(), r.u64(), r.u32(), r.u32())


@dataclass(frozen=True, slots=True)
class FileFsAttributeInformation:
    """MS-FSCC 2.5.1 FileFsAttributeInformation."""

    info_type: ClassVar[InfoType] = InfoType.FILESYSTEM
    info_class: ClassVar[int] = FsInfoClass.ATTRIBUTE
    attributes: FileSystemAttributes
    maximum_component_name_length: int
    file_system_name: str

    def pack(self) -> bytes:
        name = encode_utf16(self.file_system_name)
        return struct.pack("<III", int(self.attributes), self.maximum_component_name_length,
                           len(name)) + name

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileFsAttributeInformation:
        r = Reader(data)
        attributes, max_name = FileSystemAttributes(r.u32()), r.u32()
        return cls(attributes, max_name, _name(r))


@dataclass(frozen=True, slots=True)
class FileFsVolumeInformation:
    """MS-FSCC 2.5.9 FileFsVolumeInformation."""

    info_type: ClassVar[InfoType] = InfoType.FILESYSTEM
    info_class: ClassVar[int] = FsInfoClass.VOLUME
    creation_time: int
    serial_number: int
    supports_objects: bool
    label: str

    def pack(self) -> bytes:
        label = encode_utf16(self.label)
        return struct.pack("<QIIBB", self.creation_time, self.serial_number, len(label),
                           self.supports_objects, 0) + label

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> FileFsVolumeInformation:
        r = Reader(data)
        created, serial, label_len = r.u64(), r.u32(), r.u32()
        supports_objects = bool(r.u8())
        r.skip(1)
        return cls(created, serial, supports_objects, utf16(r.view(label_len)))
