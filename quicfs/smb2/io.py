"""CLOSE, FLUSH, READ, WRITE and LOCK (MS-SMB2 2.2.15 - 2.2.22, 2.2.26, 2.2.27)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from quicfs.smb2.constants import (
    CloseFlags,
    Command,
    FileAttributes,
    LockFlags,
    ReadFlags,
    WriteFlags,
)
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.fileid import FileId
from quicfs.smb2.wire import HEADER_SIZE, Reader

_READ_FIXED = 48  # 2.2.19: StructureSize 49 counts one byte of Buffer
_READ_RESP_FIXED = 16  # 2.2.20: StructureSize 17
_WRITE_FIXED = 48  # 2.2.21: StructureSize 49
#: 2.2.19 Padding: where we would like the data of the READ response (64 + 16).
READ_DATA_OFFSET = HEADER_SIZE + _READ_RESP_FIXED
#: 2.2.21 DataOffset: the data follows the fixed part of the WRITE request.
WRITE_DATA_OFFSET = HEADER_SIZE + _WRITE_FIXED


def _structure_size(r: Reader, what: str, expected: int) -> None:
    if (size := r.u16()) != expected:
        raise MalformedError(f"{what} StructureSize {size}, expected {expected}")


# ----------------------------------------------------------------------------- CLOSE
@dataclass(frozen=True, slots=True)
class CloseRequest:
    """2.2.15 SMB2 CLOSE Request; POSTQUERY_ATTRIB asks for the final attributes."""

    command: ClassVar[Command] = Command.CLOSE
    file_id: FileId
    flags: CloseFlags = CloseFlags.NONE

    def pack(self) -> bytes:
        return struct.pack("<HHI", 24, int(self.flags), 0) + self.file_id.pack()


@dataclass(frozen=True, slots=True)
class CloseResponse:
    """2.2.16 SMB2 CLOSE Response. Without POSTQUERY_ATTRIB in the response Flags the
    server leaves every other field zero."""

    flags: CloseFlags
    creation_time: int
    last_access_time: int
    last_write_time: int
    change_time: int
    allocation_size: int
    end_of_file: int
    file_attributes: FileAttributes

    @property
    def has_attributes(self) -> bool:
        return bool(self.flags & CloseFlags.POSTQUERY_ATTRIB)

    def pack(self) -> bytes:
        return struct.pack(
            "<HHIQQQQQQI", 60, int(self.flags), 0, self.creation_time, self.last_access_time,
            self.last_write_time, self.change_time, self.allocation_size, self.end_of_file,
            int(self.file_attributes),
        )

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> CloseResponse:
        r = Reader(msg, HEADER_SIZE)
        _structure_size(r, "CLOSE response", 60)
        flags = CloseFlags(r.u16())
        r.skip(4)
        return cls(flags, r.u64(), r.u64(), r.u64(), r.u64(), r.u64(), r.u64(),
                   FileAttributes(r.u32()))


# ----------------------------------------------------------------------------- FLUSH
@dataclass(frozen=True, slots=True)
class FlushRequest:
    """2.2.17 SMB2 FLUSH Request."""

    command: ClassVar[Command] = Command.FLUSH
    file_id: FileId

    def pack(self) -> bytes:
        return struct.pack("<HHI", 24, 0, 0) + self.file_id.pack()


@dataclass(frozen=True, slots=True)
class FlushResponse:
    """2.2.18 SMB2 FLUSH Response."""

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> FlushResponse:
        r = Reader(msg, HEADER_SIZE)
        _structure_size(r, "FLUSH response", 4)
        r.skip(2)
        return cls()


# ------------------------------------------------------------------------------ READ
@dataclass(frozen=True, slots=True)
class ReadRequest:
    """2.2.19 SMB2 READ Request (channel SMB2_CHANNEL_NONE)."""

    command: ClassVar[Command] = Command.READ
    file_id: FileId
    offset: int
    length: int
    minimum_count: int = 0
    flags: ReadFlags = ReadFlags.NONE
    padding: int = READ_DATA_OFFSET

    @property
    def payload_size(self) -> int:
        return self.length

    def pack(self) -> bytes:
        return (
            struct.pack("<HBBIQ", _READ_FIXED + 1, self.padding, int(self.flags), self.length,
                        self.offset)
            + self.file_id.pack()
            # MinimumCount, Channel, RemainingBytes, ReadChannelInfoOffset/Length, Buffer
            + struct.pack("<IIIHHB", self.minimum_count, 0, 0, 0, 0, 0)
        )


@dataclass(frozen=True, slots=True)
class ReadResponse:
    """2.2.20 SMB2 READ Response. ``data`` is a view into the message (no copy)."""

    data: memoryview
    data_remaining: int = 0

    def pack(self) -> bytes:
        """The body as a server sends it, data at offset 80."""
        return struct.pack("<HBBIII", _READ_RESP_FIXED + 1, READ_DATA_OFFSET, 0,
                           len(self.data), self.data_remaining, 0) + bytes(self.data)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> ReadResponse:
        r = Reader(msg, HEADER_SIZE)
        _structure_size(r, "READ response", _READ_RESP_FIXED + 1)
        offset = r.u8()
        r.skip(1)
        length, remaining = r.u32(), r.u32()
        r.skip(4)
        if not length:
            return cls(memoryview(b""), remaining)
        if offset < READ_DATA_OFFSET:
            raise MalformedError(f"READ data at offset {offset} overlaps the header")
        return cls(r.slice(offset, length), remaining)


# ----------------------------------------------------------------------------- WRITE
@dataclass(frozen=True, slots=True)
class WriteRequest:
    """2.2.21 SMB2 WRITE Request: the data follows the fixed part (DataOffset 112)."""

    command: ClassVar[Command] = Command.WRITE
    file_id: FileId
    offset: int
    data: bytes
    flags: WriteFlags = WriteFlags.NONE

    @property
    def payload_size(self) -> int:
        return len(self.data)

    def pack(self) -> bytes:
        head = (
            struct.pack("<HHIQ", _WRITE_FIXED + 1, WRITE_DATA_OFFSET, len(self.data),
                        self.offset)
            + self.file_id.pack()
            # Channel, RemainingBytes, WriteChannelInfoOffset/Length, Flags
            + struct.pack("<IIHHI", 0, 0, 0, 0, int(self.flags))
        )
        # An empty write still carries the one Buffer byte StructureSize 49 counts.
        return head + (bytes(self.data) if self.data else b"\0")


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """2.2.22 SMB2 WRITE Response."""

    count: int
    remaining: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HHIIHH", 17, 0, self.count, self.remaining, 0, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> WriteResponse:
        r = Reader(msg, HEADER_SIZE)
        _structure_size(r, "WRITE response", 17)
        r.skip(2)
        count, remaining = r.u32(), r.u32()
        r.skip(4)  # WriteChannelInfoOffset/Length
        return cls(count, remaining)


# ------------------------------------------------------------------------------ LOCK
@dataclass(frozen=True, slots=True)
class LockElement:
    """2.2.26.1 SMB2_LOCK_ELEMENT."""

    offset: int
    length: int
    flags: LockFlags

    def pack(self) -> bytes:
        return struct.pack("<QQII", self.offset, self.length, int(self.flags), 0)

    @classmethod
    def unpack(cls, r: Reader) -> LockElement:
        offset, length, flags = r.u64(), r.u64(), LockFlags(r.u32())
        r.skip(4)
        return cls(offset, length, flags)


@dataclass(frozen=True, slots=True)
class LockRequest:
    """2.2.26 SMB2 LOCK Request.

    The 4-byte LockSequence holds LockSequenceNumber in its low 4 bits and
    LockSequenceIndex in the upper 28 (used for resilient and durable handles).
    """

    command: ClassVar[Command] = Command.LOCK
    file_id: FileId
    locks: Sequence[LockElement]
    lock_sequence_number: int = 0
    lock_sequence_index: int = 0

    def __post_init__(self) -> None:
        if not self.locks:
            raise ValueError("a LOCK request carries at least one lock element")
        if not 0 <= self.lock_sequence_number < 16:
            raise ValueError("lock_sequence_number is 4 bits")
        if not 0 <= self.lock_sequence_index < 1 << 28:
            raise ValueError("lock_sequence_index is 28 bits")

    @property
    def lock_sequence(self) -> int:
        return (self.lock_sequence_index << 4) | self.lock_sequence_number

    def pack(self) -> bytes:
        return (
            struct.pack("<HHI", 48, len(self.locks), self.lock_sequence)
            + self.file_id.pack()
            + b"".join(lock.pack() for lock in self.locks)
        )


@dataclass(frozen=True, slots=True)
class LockResponse:
    """2.2.27 SMB2 LOCK Response."""

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> LockResponse:
        r = Reader(msg, HEADER_SIZE)
        _structure_size(r, "LOCK response", 4)
        r.skip(2)
        return cls()
