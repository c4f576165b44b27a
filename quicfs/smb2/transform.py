"""SMB2 TRANSFORM_HEADER (MS-SMB2 2.2.41): what precedes an encrypted message."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from quicfs.smb2.constants import TRANSFORM_PROTOCOL_ID
from quicfs.smb2.errors import MalformedError

TRANSFORM_HEADER_SIZE = 52
#: The authenticated data of the AEAD is the header from Nonce to its end (3.1.4.3).
AAD_OFFSET = 20
FLAG_ENCRYPTED = 0x0001
_STRUCT = struct.Struct("<4s16s16sIHHQ")
assert _STRUCT.size == TRANSFORM_HEADER_SIZE


@dataclass(frozen=True, slots=True)
class TransformHeader:
    signature: bytes
    nonce: bytes  # 16 bytes on the wire; CCM uses the first 11, GCM the first 12
    original_size: int
    session_id: int
    flags: int = FLAG_ENCRYPTED

    def pack(self) -> bytes:
        return _STRUCT.pack(TRANSFORM_PROTOCOL_ID, self.signature, self.nonce.ljust(16, b"\0"),
                            self.original_size, 0, self.flags, self.session_id)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> TransformHeader:
        if len(data) < TRANSFORM_HEADER_SIZE:
            raise MalformedError(f"transform header of {len(data)} bytes, need 52")
        proto, sig, nonce, size, _reserved, flags, sid = _STRUCT.unpack_from(bytes(data[:52]))
        if proto != TRANSFORM_PROTOCOL_ID:
            raise MalformedError(f"bad transform protocol id {proto.hex()}")
        return cls(sig, nonce, size, sid, flags)
