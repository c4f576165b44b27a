"""Small and control messages: ECHO, CANCEL, IOCTL, oplock and lease breaks, the ERROR
response, LOGOFF and TREE_DISCONNECT (MS-SMB2 2.2.2, 2.2.7, 2.2.8, 2.2.11, 2.2.12,
2.2.23 - 2.2.25, 2.2.28 - 2.2.32)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from quicfs.smb2.constants import (
    Command,
    CtlCode,
    ErrorId,
    IoctlFlags,
    LeaseBreakFlags,
    LeaseState,
    OplockLevel,
)
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.fileid import FileId
from quicfs.smb2.wire import HEADER_SIZE, Reader, pad8, utf16

_IOCTL_FIXED = 56  # 2.2.31: StructureSize 57
_IOCTL_RESP_FIXED = 48  # 2.2.32: StructureSize 49
_ERROR_FIXED = 8  # 2.2.2: StructureSize 9
_EMPTY = memoryview(b"")


def _body(msg: bytes | memoryview, what: str, expected: int) -> Reader:
    """A reader at the body of ``msg``, past a StructureSize that must be ``expected``."""
    r = Reader(msg, HEADER_SIZE)
    if (size := r.u16()) != expected:
        raise MalformedError(f"{what} StructureSize {size}, expected {expected}")
    return r


def _enum(kind: type, value: int) -> int:
    try:
        return kind(value)  # type: ignore[no-any-return]
    except ValueError:
        return value


# ---------------------------------------------------------------------- four-byte bodies
@dataclass(frozen=True, slots=True)
class EchoRequest:
    """2.2.28 SMB2 ECHO Request."""

    command: ClassVar[Command] = Command.ECHO

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)


@dataclass(frozen=True, slots=True)
class EchoResponse:
    """2.2.29 SMB2 ECHO Response."""

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> EchoResponse:
        _body(msg, "ECHO response", 4).skip(2)
        return cls()


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """2.2.30 SMB2 CANCEL Request: the body only; the header that names the request to
    cancel (MessageId or AsyncId) is the client's business."""

    command: ClassVar[Command] = Command.CANCEL

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)


@dataclass(frozen=True, slots=True)
class LogoffRequest:
    """2.2.7 SMB2 LOGOFF Request."""

    command: ClassVar[Command] = Command.LOGOFF

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)


@dataclass(frozen=True, slots=True)
class LogoffResponse:
    """2.2.8 SMB2 LOGOFF Response."""

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> LogoffResponse:
        _body(msg, "LOGOFF response", 4).skip(2)
        return cls()


@dataclass(frozen=True, slots=True)
class TreeDisconnectRequest:
    """2.2.11 SMB2 TREE_DISCONNECT Request."""

    command: ClassVar[Command] = Command.TREE_DISCONNECT

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)


@dataclass(frozen=True, slots=True)
class TreeDisconnectResponse:
    """2.2.12 SMB2 TREE_DISCONNECT Response."""

    def pack(self) -> bytes:
        return struct.pack("<HH", 4, 0)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> TreeDisconnectResponse:
        _body(msg, "TREE_DISCONNECT response", 4).skip(2)
        return cls()


# ----------------------------------------------------------------------------- IOCTL
@dataclass(frozen=True, slots=True)
class IoctlRequest:
    """2.2.31 SMB2 IOCTL Request; the input follows the fixed part (offset 120)."""

    command: ClassVar[Command] = Command.IOCTL
    ctl_code: CtlCode | int
    file_id: FileId
    input: bytes = b""
    max_output_response: int = 65536
    flags: IoctlFlags = IoctlFlags.IS_FSCTL
    max_input_response: int = 0

    @property
    def payload_size(self) -> int:
        return max(len(self.input), self.max_output_response)

    def pack(self) -> bytes:
        in_offset = HEADER_SIZE + _IOCTL_FIXED if self.input else 0
        return (
            struct.pack("<HHI", _IOCTL_FIXED + 1, 0, int(self.ctl_code))
            + self.file_id.pack()
            + struct.pack("<IIIIIIII", in_offset, len(self.input), self.max_input_response,
                          0, 0, self.max_output_response, int(self.flags), 0)
            + (bytes(self.input) or b"\0")
        )


@dataclass(frozen=True, slots=True)
class IoctlResponse:
    """2.2.32 SMB2 IOCTL Response; ``input`` and ``output`` are views into the message."""

    ctl_code: CtlCode | int
    file_id: FileId
    flags: IoctlFlags
    output: memoryview
    input: memoryview = _EMPTY

    def pack(self) -> bytes:
        """The body as a server sends it: input at offset 112, output 8-byte aligned after."""
        start = HEADER_SIZE + _IOCTL_RESP_FIXED
        in_offset = start if self.input else 0
        gap = pad8(len(self.input)) if self.input else 0
        out_offset = start + len(self.input) + gap if self.output else 0
        return (
            struct.pack("<HHI", _IOCTL_RESP_FIXED + 1, 0, int(self.ctl_code))
            + self.file_id.pack()
            + struct.pack("<IIIIII", in_offset, len(self.input), out_offset, len(self.output),
                          int(self.flags), 0)
            + bytes(self.input) + bytes(gap) + bytes(self.output)
        )

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> IoctlResponse:
        r = _body(msg, "IOCTL response", _IOCTL_RESP_FIXED + 1)
        r.skip(2)
        ctl_code = _enum(CtlCode, r.u32())
        file_id = FileId.unpack(r)
        in_offset, in_count, out_offset, out_count = r.u32(), r.u32(), r.u32(), r.u32()
        flags = IoctlFlags(r.u32())
        r.skip(4)
        return cls(ctl_code, file_id, flags, _buffer(r, "output", out_offset, out_count),
                   _buffer(r, "input", in_offset, in_count))


def _buffer(r: Reader, what: str, offset: int, count: int) -> memoryview:
    if not count:
        return _EMPTY
    if offset < HEADER_SIZE + _IOCTL_RESP_FIXED:
        raise MalformedError(f"IOCTL {what} at offset {offset} overlaps the body")
    return r.slice(offset, count)


# ---------------------------------------------------------------------- oplock breaks
@dataclass(frozen=True, slots=True)
class OplockBreakNotification:
    """2.2.23.1 Oplock Break Notification: the server lowers an oplock to ``oplock_level``."""

    oplock_level: OplockLevel | int
    file_id: FileId

    def pack(self) -> bytes:
        return struct.pack("<HBBI", 24, int(self.oplock_level), 0, 0) + self.file_id.pack()

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> OplockBreakNotification:
        level, file_id = _oplock_body(msg, "oplock break notification")
        return cls(level, file_id)


def _oplock_body(msg: bytes | memoryview, what: str) -> tuple[OplockLevel | int, FileId]:
    r = _body(msg, what, 24)
    level = _enum(OplockLevel, r.u8())
    r.skip(5)
    return level, FileId.unpack(r)


@dataclass(frozen=True, slots=True)
class OplockBreakAcknowledgement:
    """2.2.24.1 Oplock Break Acknowledgment: the level the client lowered to."""

    command: ClassVar[Command] = Command.OPLOCK_BREAK
    file_id: FileId
    oplock_level: OplockLevel = OplockLevel.NONE

    def pack(self) -> bytes:
        return struct.pack("<HBBI", 24, int(self.oplock_level), 0, 0) + self.file_id.pack()


@dataclass(frozen=True, slots=True)
class OplockBreakResponse:
    """2.2.25.1 Oplock Break Response: the level the server granted."""

    oplock_level: OplockLevel | int
    file_id: FileId

    def pack(self) -> bytes:
        return struct.pack("<HBBI", 24, int(self.oplock_level), 0, 0) + self.file_id.pack()

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> OplockBreakResponse:
        level, file_id = _oplock_body(msg, "oplock break response")
        return cls(level, file_id)


# ----------------------------------------------------------------------- lease breaks
@dataclass(frozen=True, slots=True)
class LeaseBreakNotification:
    """2.2.23.2 Lease Break Notification."""

    new_epoch: int
    flags: LeaseBreakFlags
    lease_key: bytes
    current_state: LeaseState
    new_state: LeaseState
    break_reason: int = 0
    access_mask_hint: int = 0
    share_mask_hint: int = 0

    @property
    def ack_required(self) -> bool:
        return bool(self.flags & LeaseBreakFlags.ACK_REQUIRED)

    def pack(self) -> bytes:
        return struct.pack(
            "<HHI16sIIIII", 44, self.new_epoch, int(self.flags), self.lease_key,
            int(self.current_state), int(self.new_state), self.break_reason,
            self.access_mask_hint, self.share_mask_hint,
        )

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> LeaseBreakNotification:
        r = _body(msg, "lease break notification", 44)
        epoch, flags, key = r.u16(), LeaseBreakFlags(r.u32()), r.bytes(16)
        current, new = LeaseState(r.u32()), LeaseState(r.u32())
        return cls(epoch, flags, key, current, new, r.u32(), r.u32(), r.u32())


@dataclass(frozen=True, slots=True)
class LeaseBreakAcknowledgement:
    """2.2.24.2 Lease Break Acknowledgment: the state the client keeps."""

    command: ClassVar[Command] = Command.OPLOCK_BREAK
    lease_key: bytes
    lease_state: LeaseState

    def __post_init__(self) -> None:
        if len(self.lease_key) != 16:
            raise ValueError(f"lease_key must be 16 bytes, got {len(self.lease_key)}")

    def pack(self) -> bytes:
        return struct.pack("<HHI16sIQ", 36, 0, 0, self.lease_key, int(self.lease_state), 0)


@dataclass(frozen=True, slots=True)
class LeaseBreakResponse:
    """2.2.25.2 Lease Break Response."""

    lease_key: bytes
    lease_state: LeaseState
    flags: int = 0
    duration: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HHI16sIQ", 36, 0, self.flags, self.lease_key,
                           int(self.lease_state), self.duration)

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> LeaseBreakResponse:
        r = _body(msg, "lease break response", 36)
        r.skip(2)
        flags, key, state, duration = r.u32(), r.bytes(16), LeaseState(r.u32()), r.u64()
        return cls(key, state, flags, duration)


def parse_break(msg: bytes | memoryview) -> OplockBreakNotification | LeaseBreakNotification:
    """An unsolicited OPLOCK_BREAK (MessageId 0xFFFFFFFFFFFFFFFF, 3.2.5.19): an oplock
    break (StructureSize 24) or a lease break (StructureSize 44)."""
    size = Reader(msg, HEADER_SIZE).u16()
    if size == 24:
        return OplockBreakNotification.unpack(msg)
    if size == 44:
        return LeaseBreakNotification.unpack(msg)
    raise MalformedError(f"break notification StructureSize {size}, expected 24 or 44")


# ----------------------------------------------------------------------------- ERROR
@dataclass(frozen=True, slots=True)
class ErrorContext:
    """2.2.2.1 SMB2 ERROR Context Response."""

    error_id: ErrorId | int
    data: bytes


SYMLINK_ERROR_TAG = 0x4C4D5953  # "SYML"
SYMLINK_FLAG_RELATIVE = 0x00000001


@dataclass(frozen=True, slots=True)
class SymlinkError:
    """2.2.2.2.1 Symbolic Link Error Response (STATUS_STOPPED_ON_SYMLINK).

    ``unparsed_path_length`` counts the bytes at the end of the CREATE name that follow
    the link; the client splices ``substitute_name`` in front of them.
    """

    unparsed_path_length: int
    substitute_name: str
    print_name: str
    flags: int
    reparse_tag: int

    @property
    def relative(self) -> bool:
        return bool(self.flags & SYMLINK_FLAG_RELATIVE)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> SymlinkError:
        r = Reader(data)
        length = r.u32()
        if length < 24 or length > len(r) - 4:
            raise MalformedError(f"SymLinkLength {length} in a {len(r)}-byte error")
        if (tag := r.u32()) != SYMLINK_ERROR_TAG:
            raise MalformedError(f"SymLinkErrorTag {tag:#x}")
        reparse_tag, _, unparsed = r.u32(), r.u16(), r.u16()
        sub_off, sub_len, print_off, print_len = r.u16(), r.u16(), r.u16(), r.u16()
        flags = r.u32()
        paths = Reader(r.slice(r.pos, 4 + length - r.pos))
        return cls(unparsed, utf16(paths.slice(sub_off, sub_len)),
                   utf16(paths.slice(print_off, print_len)), flags, reparse_tag)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """2.2.2 SMB2 ERROR Response.

    With ErrorContextCount > 0 (3.1.1) ErrorData is a list of 8-byte aligned contexts
    (2.2.2.1); otherwise it is the raw ErrorData. Windows sends ByteCount 0 with a single
    pad byte; a ByteCount of 0 with no byte at all is tolerated too.
    """

    error_context_count: int
    data: bytes
    contexts: tuple[ErrorContext, ...] = ()

    @property
    def error_data(self) -> bytes:
        """The data of the first (default) context, or the raw ErrorData."""
        return self.contexts[0].data if self.contexts else self.data

    def symlink(self) -> SymlinkError:
        """Decode the ErrorData of a STATUS_STOPPED_ON_SYMLINK response."""
        return SymlinkError.unpack(self.error_data)

    def required_size(self) -> int:
        """The minimum buffer length of a STATUS_BUFFER_TOO_SMALL response (2.2.2.2)."""
        return Reader(self.error_data).u32()

    def pack(self) -> bytes:
        """The body as a server sends it (for tests and the test server)."""
        data = self.data
        if self.contexts:
            out = bytearray()
            for i, ctx in enumerate(self.contexts):
                out += struct.pack("<II", len(ctx.data), int(ctx.error_id)) + ctx.data
                if i != len(self.contexts) - 1:
                    out += bytes(pad8(len(out)))
            data = bytes(out)
        return struct.pack("<HBBI", _ERROR_FIXED + 1, self.error_context_count or
                           len(self.contexts), 0, len(data)) + (data or b"\0")

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> ErrorResponse:
        r = _body(msg, "ERROR response", _ERROR_FIXED + 1)
        count = r.u8()
        r.skip(1)
        byte_count = r.u32()
        if not byte_count:
            return cls(count, b"")
        data = r.view(byte_count)
        contexts: list[ErrorContext] = []
        if count:
            d = Reader(data)
            for i in range(count):
                if i:
                    d.seek(d.pos + pad8(d.pos))
                length, error_id = d.u32(), d.u32()
                contexts.append(ErrorContext(_enum(ErrorId, error_id), d.bytes(length)))
        return cls(count, bytes(data), tuple(contexts))
