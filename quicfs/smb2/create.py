"""CREATE request and response with their create contexts (MS-SMB2 2.2.13, 2.2.14).

A create context (2.2.13.2) is a chained record: Next, NameOffset, NameLength, Reserved,
DataOffset, DataLength, then the name and the data, offsets counted from the start of the
record and each record 8-byte aligned. Request contexts know their 4-character name and pack
their Data; response contexts are decoded by name (and, for leases, by length); a name we do
not know is kept as :class:`RawCreateContext`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from quicfs.smb2.constants import (
    AccessMask,
    Command,
    CreateAction,
    CreateDisposition,
    CreateOptions,
    CreateResponseFlags,
    DurableHandleFlags,
    FileAttributes,
    ImpersonationLevel,
    LeaseFlags,
    LeaseState,
    OplockLevel,
    ShareAccess,
)
from quicfs.smb2.ea import pack_eas
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.fileid import FileId
from quicfs.smb2.wire import HEADER_SIZE, Reader, encode_utf16, pad8

_REQ_FIXED = 56  # 2.2.13: StructureSize 57 counts one byte of Buffer
_RESP_FIXED = 88  # 2.2.14: StructureSize 89
_CTX_HEADER = 16  # 2.2.13.2: Next .. DataLength
_LEASE_KEY_SIZE = 16

#: Context names (2.2.13.2 / 2.2.14.2), as the bytes on the wire.
DURABLE_HANDLE_REQUEST = b"DHnQ"
DURABLE_HANDLE_RECONNECT = b"DHnC"
DURABLE_HANDLE_REQUEST_V2 = b"DH2Q"
DURABLE_HANDLE_RECONNECT_V2 = b"DH2C"
REQUEST_LEASE = b"RqLs"
QUERY_MAXIMAL_ACCESS = b"MxAc"
QUERY_ON_DISK_ID = b"QFid"
ALLOCATION_SIZE = b"AlSi"
TIMEWARP_TOKEN = b"TWrp"
EA_BUFFER = b"ExtA"


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class DurableHandleRequest:
    """2.2.13.2.3 SMB2_CREATE_DURABLE_HANDLE_REQUEST ("DHnQ", 16 reserved bytes)."""

    name: ClassVar[bytes] = DURABLE_HANDLE_REQUEST

    def pack(self) -> bytes:
        return bytes(16)


@dataclass(frozen=True, slots=True)
class DurableHandleReconnect:
    """2.2.13.2.4 SMB2_CREATE_DURABLE_HANDLE_RECONNECT ("DHnC")."""

    name: ClassVar[bytes] = DURABLE_HANDLE_RECONNECT
    file_id: FileId

    def pack(self) -> bytes:
        return self.file_id.pack()


@dataclass(frozen=True, slots=True)
class DurableHandleRequestV2:
    """2.2.13.2.11 SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2 ("DH2Q").

    ``timeout`` is in milliseconds (0: let the server choose); ``create_guid`` identifies
    the open for replay and reconnect and must be kept by the caller.
    """

    name: ClassVar[bytes] = DURABLE_HANDLE_REQUEST_V2
    timeout: int = 0
    persistent: bool = False
    create_guid: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def flags(self) -> DurableHandleFlags:
        return DurableHandleFlags.PERSISTENT if self.persistent else DurableHandleFlags.NONE

    def pack(self) -> bytes:
        return struct.pack("<II8s16s", self.timeout, int(self.flags), bytes(8),
                           self.create_guid.bytes_le)


@dataclass(frozen=True, slots=True)
class DurableHandleReconnectV2:
    """2.2.13.2.12 SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2 ("DH2C")."""

    name: ClassVar[bytes] = DURABLE_HANDLE_RECONNECT_V2
    file_id: FileId
    create_guid: uuid.UUID
    persistent: bool = False

    @property
    def flags(self) -> DurableHandleFlags:
        return DurableHandleFlags.PERSISTENT if self.persistent else DurableHandleFlags.NONE

    def pack(self) -> bytes:
        return self.file_id.pack() + self.create_guid.bytes_le + struct.pack("<I", self.flags)


def _check_key(what: str, key: bytes) -> None:
    if len(key) != _LEASE_KEY_SIZE:
        raise ValueError(f"{what} must be 16 bytes, got {len(key)}")


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """2.2.13.2.8 SMB2_CREATE_REQUEST_LEASE ("RqLs", 32 bytes; SMB 2.1)."""

    name: ClassVar[bytes] = REQUEST_LEASE
    lease_key: bytes
    state: LeaseState

    def __post_init__(self) -> None:
        _check_key("lease_key", self.lease_key)

    def pack(self) -> bytes:
        return struct.pack("<16sIIQ", self.lease_key, int(self.state), 0, 0)


@dataclass(frozen=True, slots=True)
class LeaseRequestV2:
    """2.2.13.2.10 SMB2_CREATE_REQUEST_LEASE_V2 ("RqLs", 52 bytes; SMB 3.x).

    A non-zero ``parent_lease_key`` sets SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET by itself.
    """

    name: ClassVar[bytes] = REQUEST_LEASE
    lease_key: bytes
    state: LeaseState
    flags: LeaseFlags = LeaseFlags.NONE
    parent_lease_key: bytes = bytes(_LEASE_KEY_SIZE)
    epoch: int = 0

    def __post_init__(self) -> None:
        _check_key("lease_key", self.lease_key)
        _check_key("parent_lease_key", self.parent_lease_key)

    def pack(self) -> bytes:
        flags = self.flags
        if any(self.parent_lease_key):
            flags |= LeaseFlags.PARENT_LEASE_KEY_SET
        return struct.pack("<16sIIQ16sHH", self.lease_key, int(self.state), int(flags), 0,
                           self.parent_lease_key, self.epoch, 0)


@dataclass(frozen=True, slots=True)
class QueryMaximalAccessRequest:
    """2.2.13.2.5 SMB2_CREATE_QUERY_MAXIMAL_ACCESS_REQUEST ("MxAc").

    ``timestamp`` (a FILETIME) is optional: without it the Data is empty.
    """

    name: ClassVar[bytes] = QUERY_MAXIMAL_ACCESS
    timestamp: int | None = None

    def pack(self) -> bytes:
        return b"" if self.timestamp is None else struct.pack("<Q", self.timestamp)


@dataclass(frozen=True, slots=True)
class QueryOnDiskId:
    """2.2.13.2.9 SMB2_CREATE_QUERY_ON_DISK_ID ("QFid"): no Data."""

    name: ClassVar[bytes] = QUERY_ON_DISK_ID

    def pack(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class AllocationSizeRequest:
    """2.2.13.2.6 SMB2_CREATE_ALLOCATION_SIZE ("AlSi")."""

    name: ClassVar[bytes] = ALLOCATION_SIZE
    allocation_size: int

    def pack(self) -> bytes:
        return struct.pack("<Q", self.allocation_size)


@dataclass(frozen=True, slots=True)
class TimewarpTokenRequest:
    """2.2.13.2.7 SMB2_CREATE_TIMEWARP_TOKEN ("TWrp"): open a snapshot (a FILETIME)."""

    name: ClassVar[bytes] = TIMEWARP_TOKEN
    timestamp: int

    def pack(self) -> bytes:
        return struct.pack("<Q", self.timestamp)


@dataclass(frozen=True, slots=True)
class EaBufferRequest:
    """2.2.13.2.1 SMB2_CREATE_EA_BUFFER ("ExtA"): extended attributes a new file is
    created with, in the same step (MS-FSCC 2.4.15 entries)."""

    name: ClassVar[bytes] = EA_BUFFER
    eas: tuple[tuple[bytes, bytes], ...]

    def pack(self) -> bytes:
        return pack_eas(list(self.eas))


@dataclass(frozen=True, slots=True)
class RawCreateContext:
    """Any create context by its raw name and Data: unknown ones in responses, and
    requests this module has no class for (e.g. the 16-byte GUID names)."""

    name: bytes
    data: bytes

    def pack(self) -> bytes:
        return self.data


CreateRequestContext = (
    DurableHandleRequest
    | DurableHandleReconnect
    | DurableHandleRequestV2
    | DurableHandleReconnectV2
    | LeaseRequest
    | LeaseRequestV2
    | QueryMaximalAccessRequest
    | QueryOnDiskId
    | AllocationSizeRequest
    | TimewarpTokenRequest
    | EaBufferRequest
    | RawCreateContext
)


def pack_create_contexts(
    contexts: Sequence[CreateRequestContext] | Sequence[CreateResponseContext],
) -> bytes:
    """The chain of 2.2.13.2 records; each but the last padded to 8 bytes, Next pointing
    at the following one."""
    out = bytearray()
    for i, ctx in enumerate(contexts):
        name = bytes(ctx.name)
        data = ctx.pack()
        if not name:
            raise ValueError("a create context needs a name")
        name_end = _CTX_HEADER + len(name)
        data_offset = name_end + pad8(name_end) if data else 0
        size = (data_offset + len(data)) if data else name_end
        last = i == len(contexts) - 1
        nxt = 0 if last else size + pad8(size)
        out += struct.pack("<IHHHHI", nxt, _CTX_HEADER, len(name), 0, data_offset, len(data))
        out += name
        if data:
            out += bytes(pad8(name_end)) + data
        if not last:
            out += bytes(pad8(size))
    return bytes(out)


# -------------------------------------------------------------------------- responses
@dataclass(frozen=True, slots=True)
class DurableHandleResponse:
    """2.2.14.2.3 SMB2_CREATE_DURABLE_HANDLE_RESPONSE ("DHnQ", 8 reserved bytes)."""

    name: ClassVar[bytes] = DURABLE_HANDLE_REQUEST

    def pack(self) -> bytes:
        return bytes(8)

    @classmethod
    def unpack(cls, data: memoryview) -> DurableHandleResponse:
        return cls()


@dataclass(frozen=True, slots=True)
class DurableHandleResponseV2:
    """2.2.14.2.12 SMB2_CREATE_DURABLE_HANDLE_RESPONSE_V2 ("DH2Q"): timeout in ms."""

    name: ClassVar[bytes] = DURABLE_HANDLE_REQUEST_V2
    timeout: int
    flags: DurableHandleFlags

    @property
    def persistent(self) -> bool:
        return bool(self.flags & DurableHandleFlags.PERSISTENT)

    def pack(self) -> bytes:
        return struct.pack("<II", self.timeout, int(self.flags))

    @classmethod
    def unpack(cls, data: memoryview) -> DurableHandleResponseV2:
        r = Reader(data)
        return cls(r.u32(), DurableHandleFlags(r.u32()))


@dataclass(frozen=True, slots=True)
class LeaseResponseV1:
    """2.2.14.2.10 SMB2_CREATE_RESPONSE_LEASE ("RqLs", 32 bytes)."""

    name: ClassVar[bytes] = REQUEST_LEASE
    lease_key: bytes
    state: LeaseState
    flags: LeaseFlags
    duration: int = 0

    def pack(self) -> bytes:
        return struct.pack("<16sIIQ", self.lease_key, int(self.state), int(self.flags),
                           self.duration)

    @classmethod
    def unpack(cls, data: memoryview) -> LeaseResponseV1:
        r = Reader(data)
        return cls(r.bytes(16), LeaseState(r.u32()), LeaseFlags(r.u32()), r.u64())


@dataclass(frozen=True, slots=True)
class LeaseResponseV2:
    """2.2.14.2.11 SMB2_CREATE_RESPONSE_LEASE_V2 ("RqLs", 52 bytes)."""

    name: ClassVar[bytes] = REQUEST_LEASE
    lease_key: bytes
    state: LeaseState
    flags: LeaseFlags
    parent_lease_key: bytes = bytes(_LEASE_KEY_SIZE)
    epoch: int = 0
    duration: int = 0

    def pack(self) -> bytes:
        return struct.pack("<16sIIQ16sHH", self.lease_key, int(self.state), int(self.flags),
                           self.duration, self.parent_lease_key, self.epoch, 0)

    @classmethod
    def unpack(cls, data: memoryview) -> LeaseResponseV2:
        r = Reader(data)
        key, state, flags, duration = r.bytes(16), r.u32(), r.u32(), r.u64()
        parent, epoch = r.bytes(16), r.u16()
        return cls(key, LeaseState(state), LeaseFlags(flags), parent, epoch, duration)


@dataclass(frozen=True, slots=True)
class MaximalAccessResponse:
    """2.2.14.2.5 SMB2_CREATE_QUERY_MAXIMAL_ACCESS_RESPONSE ("MxAc")."""

    name: ClassVar[bytes] = QUERY_MAXIMAL_ACCESS
    query_status: int
    maximal_access: AccessMask

    def pack(self) -> bytes:
        return struct.pack("<II", self.query_status, int(self.maximal_access))

    @classmethod
    def unpack(cls, data: memoryview) -> MaximalAccessResponse:
        r = Reader(data)
        return cls(r.u32(), AccessMask(r.u32()))


@dataclass(frozen=True, slots=True)
class OnDiskIdResponse:
    """2.2.14.2.9 SMB2_CREATE_QUERY_ON_DISK_ID response ("QFid"): DiskFileId (8),
    VolumeId (8), Reserved (16)."""

    name: ClassVar[bytes] = QUERY_ON_DISK_ID
    disk_file_id: int
    volume_id: int

    def pack(self) -> bytes:
        return struct.pack("<QQ16s", self.disk_file_id, self.volume_id, bytes(16))

    @classmethod
    def unpack(cls, data: memoryview) -> OnDiskIdResponse:
        r = Reader(data)
        return cls(r.u64(), r.u64())


def _lease_response(data: memoryview) -> LeaseResponseV1 | LeaseResponseV2:
    if len(data) >= 52:
        return LeaseResponseV2.unpack(data)
    if len(data) >= 32:
        return LeaseResponseV1.unpack(data)
    raise MalformedError(f"lease create context of {len(data)} bytes")


CreateResponseContext = (
    DurableHandleResponse
    | DurableHandleResponseV2
    | LeaseResponseV1
    | LeaseResponseV2
    | MaximalAccessResponse
    | OnDiskIdResponse
    | RawCreateContext
)

_RESPONSE_DECODERS: dict[bytes, Callable[[memoryview], CreateResponseContext]] = {
    DURABLE_HANDLE_REQUEST: DurableHandleResponse.unpack,
    DURABLE_HANDLE_REQUEST_V2: DurableHandleResponseV2.unpack,
    REQUEST_LEASE: _lease_response,
    QUERY_MAXIMAL_ACCESS: MaximalAccessResponse.unpack,
    QUERY_ON_DISK_ID: OnDiskIdResponse.unpack,
}


def unpack_create_contexts(buf: bytes | memoryview) -> list[CreateResponseContext]:
    """Walk a 2.2.13.2 chain (``buf`` is exactly the CreateContexts area).

    Every record must lie inside ``buf``, Next must be 8-byte aligned and move forward,
    and each record's name and data must lie inside the record.
    """
    r = Reader(buf)
    out: list[CreateResponseContext] = []
    pos = 0
    while True:
        r.seek(pos)
        nxt, name_off, name_len, _, data_off, data_len = (
            r.u32(), r.u16(), r.u16(), r.u16(), r.u16(), r.u32(),
        )
        if nxt:
            if nxt % 8 or nxt < _CTX_HEADER or pos + nxt >= len(r):
                raise MalformedError(f"create context Next {nxt} at offset {pos}")
            end = pos + nxt
        else:
            end = len(r)
        if name_len == 0 or name_off < _CTX_HEADER or pos + name_off + name_len > end:
            raise MalformedError(f"create context name ({name_off}, {name_len}) at {pos}")
        if data_len and (data_off < _CTX_HEADER or pos + data_off + data_len > end):
            raise MalformedError(f"create context data ({data_off}, {data_len}) at {pos}")
        name = bytes(r.slice(pos + name_off, name_len))
        data = r.slice(pos + data_off, data_len) if data_len else memoryview(b"")
        decoder = _RESPONSE_DECODERS.get(name)
        out.append(decoder(data) if decoder else RawCreateContext(name, bytes(data)))
        if not nxt:
            return out
        pos = end


# ---------------------------------------------------------------------------- CREATE
@dataclass(frozen=True, slots=True)
class CreateRequest:
    """2.2.13 SMB2 CREATE Request.

    ``name`` is relative to the share, with ``\\`` separators and no leading ``\\``; the
    empty name opens the share's root.
    """

    command: ClassVar[Command] = Command.CREATE
    name: str
    desired_access: AccessMask = AccessMask.GENERIC_READ
    file_attributes: FileAttributes = FileAttributes.NONE
    share_access: ShareAccess = ShareAccess.ALL
    disposition: CreateDisposition = CreateDisposition.OPEN
    options: CreateOptions = CreateOptions.NONE
    oplock_level: OplockLevel = OplockLevel.NONE
    impersonation: ImpersonationLevel = ImpersonationLevel.IMPERSONATION
    contexts: Sequence[CreateRequestContext] = ()

    def __post_init__(self) -> None:
        if self.name.startswith("\\"):
            raise ValueError(f"CREATE name {self.name!r} must not start with a backslash")

    def pack(self) -> bytes:
        name = encode_utf16(self.name)
        name_offset = HEADER_SIZE + _REQ_FIXED
        if self.contexts:
            chain = pack_create_contexts(self.contexts)
            buffer = name + bytes(pad8(len(name)))
            ctx_offset, ctx_length = name_offset + len(buffer), len(chain)
            buffer += chain
        else:
            # The Buffer holds at least one byte (StructureSize 57), even for the root.
            buffer = name or b"\0"
            ctx_offset = ctx_length = 0
        fixed = struct.pack(
            "<HBBIQQIIIIIHHII", _REQ_FIXED + 1, 0, int(self.oplock_level),
            int(self.impersonation), 0, 0, int(self.desired_access),
            int(self.file_attributes), int(self.share_access), int(self.disposition),
            int(self.options), name_offset, len(name), ctx_offset, ctx_length,
        )
        return fixed + buffer


_C = TypeVar("_C")


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """2.2.14 SMB2 CREATE Response; times are FILETIMEs."""

    oplock_level: OplockLevel | int
    flags: CreateResponseFlags
    create_action: CreateAction | int
    creation_time: int
    last_access_time: int
    last_write_time: int
    change_time: int
    allocation_size: int
    end_of_file: int
    file_attributes: FileAttributes
    file_id: FileId
    contexts: tuple[CreateResponseContext, ...] = ()

    def pack(self) -> bytes:
        """The body as a server sends it (for tests and the in-memory test server)."""
        chain = pack_create_contexts(self.contexts) if self.contexts else b""
        ctx_offset = HEADER_SIZE + _RESP_FIXED if chain else 0
        return struct.pack(
            "<HBBIQQQQQQII", _RESP_FIXED + 1, int(self.oplock_level), int(self.flags),
            int(self.create_action), self.creation_time, self.last_access_time,
            self.last_write_time, self.change_time, self.allocation_size, self.end_of_file,
            int(self.file_attributes), 0,
        ) + self.file_id.pack() + struct.pack("<II", ctx_offset, len(chain)) + chain

    def context(self, kind: type[_C]) -> _C | None:
        """The first response context of class ``kind``, if the server sent one."""
        for ctx in self.contexts:
            if isinstance(ctx, kind):
                return ctx
        return None

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> CreateResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != _RESP_FIXED + 1:
            raise MalformedError(f"CREATE response StructureSize {size}, expected 89")
        oplock, flags, action = r.u8(), r.u8(), r.u32()
        times = (r.u64(), r.u64(), r.u64(), r.u64())
        allocation, eof = r.u64(), r.u64()
        attributes = FileAttributes(r.u32())
        r.skip(4)
        file_id = FileId.unpack(r)
        ctx_offset, ctx_length = r.u32(), r.u32()
        contexts: list[CreateResponseContext] = []
        if ctx_length:
            if ctx_offset < HEADER_SIZE + _RESP_FIXED:
                raise MalformedError(f"CREATE contexts at offset {ctx_offset} overlap the body")
            contexts = unpack_create_contexts(r.slice(ctx_offset, ctx_length))
        return cls(
            _enum(OplockLevel, oplock), CreateResponseFlags(flags),
            _enum(CreateAction, action), *times, allocation, eof, attributes, file_id,
            tuple(contexts),
        )


def _enum(kind: type, value: int) -> int:
    try:
        return kind(value)  # type: ignore[no-any-return]
    except ValueError:
        return value
