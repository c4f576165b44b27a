"""SMB2_FILEID (MS-SMB2 2.2.14.1): the 16-byte handle of an open."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from quicfs.smb2.wire import Reader

_FILEID = struct.Struct("<QQ")
_ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class FileId:
    """Persistent and volatile halves of an open's id (2.2.14.1)."""

    persistent: int
    volatile: int

    def pack(self) -> bytes:
        return _FILEID.pack(self.persistent, self.volatile)

    @classmethod
    def unpack(cls, r: Reader) -> FileId:
        return cls(r.u64(), r.u64())

    @classmethod
    def related(cls) -> FileId:
        """The all-0xFF id: "the FileId of the previous request" in a related compound
        (3.2.4.1.4)."""
        return cls(_ALL_ONES, _ALL_ONES)

    @property
    def is_related(self) -> bool:
        return self.persistent == _ALL_ONES and self.volatile == _ALL_ONES

    def __repr__(self) -> str:
        return f"FileId({self.persistent:#x}, {self.volatile:#x})"
