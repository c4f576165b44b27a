"""NEGOTIATE request and response with SMB 3.1.1 negotiate contexts (MS-SMB2 2.2.3, 2.2.4)."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from quicfs.smb2.constants import (
    Capabilities,
    Command,
    Dialect,
    HashAlgorithm,
    NegotiateContextType,
    SecurityMode,
    TransportCapabilityFlags,
)
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.wire import HEADER_SIZE, Reader, encode_utf16, pad8, utf16

_REQ_FIXED = 36


@dataclass(frozen=True, slots=True)
class PreauthIntegrityContext:
    """2.2.3.1.1 SMB2_PREAUTH_INTEGRITY_CAPABILITIES."""

    type: ClassVar[int] = NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES
    hash_algorithms: tuple[int, ...] = (HashAlgorithm.SHA_512,)
    salt: bytes = b""

    def pack(self) -> bytes:
        head = struct.pack("<HH", len(self.hash_algorithms), len(self.salt))
        return head + b"".join(struct.pack("<H", a) for a in self.hash_algorithms) + self.salt

    @classmethod
    def unpack(cls, data: memoryview) -> PreauthIntegrityContext:
        r = Reader(data)
        count, salt_len = r.u16(), r.u16()
        algos = tuple(r.u16() for _ in range(count))
        return cls(algos, r.bytes(salt_len))


@dataclass(frozen=True, slots=True)
class EncryptionContext:
    """2.2.3.1.2 SMB2_ENCRYPTION_CAPABILITIES."""

    type: ClassVar[int] = NegotiateContextType.ENCRYPTION_CAPABILITIES
    ciphers: tuple[int, ...] = ()

    def pack(self) -> bytes:
        return struct.pack("<H", len(self.ciphers)) + b"".join(
            struct.pack("<H", c) for c in self.ciphers
        )

    @classmethod
    def unpack(cls, data: memoryview) -> EncryptionContext:
        r = Reader(data)
        return cls(tuple(r.u16() for _ in range(r.u16())))


@dataclass(frozen=True, slots=True)
class CompressionContext:
    """2.2.3.1.3 SMB2_COMPRESSION_CAPABILITIES: the algorithms (CompressionAlgorithm, 2.2.3.1.3)
    a side supports; ``chained``: SMB2_COMPRESSION_CAPABILITIES_FLAG_CHAINED."""

    type: ClassVar[int] = NegotiateContextType.COMPRESSION_CAPABILITIES
    algorithms: tuple[int, ...] = ()
    chained: bool = False

    def pack(self) -> bytes:
        return struct.pack("<HHI", len(self.algorithms), 0, int(self.chained)) + b"".join(
            struct.pack("<H", a) for a in self.algorithms
        )

    @classmethod
    def unpack(cls, data: memoryview) -> CompressionContext:
        r = Reader(data)
        count = r.u16()
        r.u16()  # Padding
        flags = r.u32()
        return cls(tuple(r.u16() for _ in range(count)), bool(flags & 1))


@dataclass(frozen=True, slots=True)
class SigningContext:
    """2.2.3.1.7 SMB2_SIGNING_CAPABILITIES."""

    type: ClassVar[int] = NegotiateContextType.SIGNING_CAPABILITIES
    algorithms: tuple[int, ...] = ()

    def pack(self) -> bytes:
        return struct.pack("<H", len(self.algorithms)) + b"".join(
            struct.pack("<H", a) for a in self.algorithms
        )

    @classmethod
    def unpack(cls, data: memoryview) -> SigningContext:
        r = Reader(data)
        return cls(tuple(r.u16() for _ in range(r.u16())))


@dataclass(frozen=True, slots=True)
class TransportCapabilitiesContext:
    """2.2.3.1.5 SMB2_TRANSPORT_CAPABILITIES: offered over QUIC only."""

    type: ClassVar[int] = NegotiateContextType.TRANSPORT_CAPABILITIES
    flags: TransportCapabilityFlags = TransportCapabilityFlags.ACCEPT_TRANSPORT_LEVEL_SECURITY

    def pack(self) -> bytes:
        return struct.pack("<I", int(self.flags))

    @classmethod
    def unpack(cls, data: memoryview) -> TransportCapabilitiesContext:
        return cls(TransportCapabilityFlags(Reader(data).u32()))


@dataclass(frozen=True, slots=True)
class NetnameContext:
    """2.2.3.1.4 SMB2_NETNAME_NEGOTIATE_CONTEXT_ID: the server name the client dialed."""

    type: ClassVar[int] = NegotiateContextType.NETNAME_NEGOTIATE_CONTEXT_ID
    name: str = ""

    def pack(self) -> bytes:
        return encode_utf16(self.name)

    @classmethod
    def unpack(cls, data: memoryview) -> NetnameContext:
        return cls(utf16(data))


@dataclass(frozen=True, slots=True)
class UnknownContext:
    type: int
    data: bytes

    def pack(self) -> bytes:
        return self.data


NegotiateContext = (
    PreauthIntegrityContext
    | EncryptionContext
    | CompressionContext
    | SigningContext
    | TransportCapabilitiesContext
    | NetnameContext
    | UnknownContext
)

_DECODERS = {
    NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES: PreauthIntegrityContext.unpack,
    NegotiateContextType.ENCRYPTION_CAPABILITIES: EncryptionContext.unpack,
    NegotiateContextType.COMPRESSION_CAPABILITIES: CompressionContext.unpack,
    NegotiateContextType.SIGNING_CAPABILITIES: SigningContext.unpack,
    NegotiateContextType.TRANSPORT_CAPABILITIES: TransportCapabilitiesContext.unpack,
    NegotiateContextType.NETNAME_NEGOTIATE_CONTEXT_ID: NetnameContext.unpack,
}


def pack_contexts(contexts: list[NegotiateContext]) -> bytes:
    """Contexts back to back, each 8-byte aligned from the first (2.2.3.1)."""
    out = bytearray()
    for i, ctx in enumerate(contexts):
        data = ctx.pack()
        out += struct.pack("<HHI", ctx.type, len(data), 0) + data
        if i != len(contexts) - 1:
            out += bytes(pad8(len(out)))
    return bytes(out)


def unpack_contexts(r: Reader, offset: int, count: int) -> list[NegotiateContext]:
    if count > 64:
        raise MalformedError(f"{count} negotiate contexts is more than any server sends")
    out: list[NegotiateContext] = []
    pos = offset
    for _ in range(count):
        pos += pad8(pos - offset)
        head = Reader(r.slice(pos, 8))
        ctype, length = head.u16(), head.u16()
        data = r.slice(pos + 8, length)
        decoder = _DECODERS.get(ctype)  # type: ignore[call-overload]
        out.append(decoder(data) if decoder else UnknownContext(ctype, bytes(data)))
        pos += 8 + length
    return out


@dataclass(frozen=True, slots=True)
class NegotiateRequest:
    """2.2.3 SMB2 NEGOTIATE Request."""

    command: ClassVar[Command] = Command.NEGOTIATE
    dialects: tuple[int, ...] = (Dialect.SMB_3_1_1,)
    security_mode: SecurityMode = SecurityMode.SIGNING_ENABLED
    capabilities: Capabilities = Capabilities.NONE
    client_guid: uuid.UUID = field(default_factory=uuid.uuid4)
    contexts: tuple[NegotiateContext, ...] = ()

    def pack(self) -> bytes:
        dialects = b"".join(struct.pack("<H", d) for d in self.dialects)
        body_end = HEADER_SIZE + _REQ_FIXED + len(dialects)
        ctx_offset = body_end + pad8(body_end) if self.contexts else 0
        fixed = struct.pack(
            "<HHHHI16sIHH", _REQ_FIXED, len(self.dialects), int(self.security_mode), 0,
            int(self.capabilities), self.client_guid.bytes_le, ctx_offset,
            len(self.contexts), 0,
        )
        out = fixed + dialects
        if self.contexts:
            out += bytes(pad8(body_end)) + pack_contexts(list(self.contexts))
        return out


@dataclass(frozen=True, slots=True)
class NegotiateResponse:
    """2.2.4 SMB2 NEGOTIATE Response."""

    security_mode: SecurityMode
    dialect: int
    server_guid: uuid.UUID
    capabilities: Capabilities
    max_transact_size: int
    max_read_size: int
    max_write_size: int
    system_time: int
    security_buffer: bytes
    contexts: tuple[NegotiateContext, ...]

    def context(self, kind: type) -> NegotiateContext | None:
        for ctx in self.contexts:
            if isinstance(ctx, kind):
                return ctx
        return None

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> NegotiateResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != 65:
            raise MalformedError(f"NEGOTIATE response StructureSize {size}, expected 65")
        security_mode = SecurityMode(r.u16() & 0x3)
        dialect = r.u16()
        ctx_count = r.u16()
        server_guid = r.guid()
        capabilities = Capabilities(r.u32() & 0xFF)
        max_transact, max_read, max_write = r.u32(), r.u32(), r.u32()
        system_time = r.u64()
        r.u64()  # ServerStartTime
        sec_offset, sec_length = r.u16(), r.u16()
        ctx_offset = r.u32()
        security_buffer = bytes(r.slice(sec_offset, sec_length)) if sec_length else b""
        contexts: list[NegotiateContext] = []
        if dialect == Dialect.SMB_3_1_1 and ctx_count:
            contexts = unpack_contexts(r, ctx_offset, ctx_count)
        return cls(
            security_mode, dialect, server_guid, capabilities, max_transact, max_read,
            max_write, system_time, security_buffer, tuple(contexts),
        )
