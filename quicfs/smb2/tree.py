"""TREE_CONNECT (MS-SMB2 2.2.9, 2.2.10)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from quicfs.smb2.constants import AccessMask, Command, ShareFlags, ShareType
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.wire import HEADER_SIZE, Reader, encode_utf16


@dataclass(frozen=True, slots=True)
class TreeConnectRequest:
    """2.2.9 SMB2 TREE_CONNECT Request; ``path`` is ``\\\\server\\share``."""

    command: ClassVar[Command] = Command.TREE_CONNECT
    path: str

    def pack(self) -> bytes:
        name = encode_utf16(self.path)
        return struct.pack("<HHHH", 9, 0, HEADER_SIZE + 8, len(name)) + name


@dataclass(frozen=True, slots=True)
class TreeConnectResponse:
    """2.2.10 SMB2 TREE_CONNECT Response."""

    share_type: int
    share_flags: ShareFlags
    capabilities: int
    maximal_access: AccessMask

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> TreeConnectResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != 16:
            raise MalformedError(f"TREE_CONNECT response StructureSize {size}, expected 16")
        share_type = r.u8()
        r.u8()
        flags = ShareFlags(r.u32())
        caps = r.u32()
        access = AccessMask(r.u32())
        try:
            share_type = ShareType(share_type)
        except ValueError:
            pass
        return cls(share_type, flags, caps, access)
