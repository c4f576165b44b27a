"""Bounds-checked readers and writers for SMB2 structures.

The server is not trusted: every decoder goes through :class:`Reader`, which raises
:class:`~quicfs.smb2.errors.MalformedError` (never IndexError or struct.error) when a length,
offset or count points outside the buffer.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sized

from quicfs.smb2.errors import MalformedError

HEADER_SIZE = 64


class Reader:
    """A cursor over an immutable buffer whose every read is checked against its end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        if pos < 0 or pos > len(self.buf):
            raise MalformedError(f"start offset {pos} outside a {len(self.buf)}-byte buffer")
        self.pos = pos

    def __len__(self) -> int:
        return len(self.buf)

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise MalformedError(
                f"need {n} bytes at offset {self.pos}, buffer has {len(self.buf)}"
            )
        view = self.buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def skip(self, n: int) -> None:
        self._take(n)

    def seek(self, pos: int) -> None:
        if pos < 0 or pos > len(self.buf):
            raise MalformedError(f"offset {pos} outside a {len(self.buf)}-byte buffer")
        self.pos = pos

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "little")

    def i64(self) -> int:
        return int.from_bytes(self._take(8), "little", signed=True)

    def bytes(self, n: int) -> bytes:
        return bytes(self._take(n))

    def view(self, n: int) -> memoryview:
        return self._take(n)

    def guid(self) -> uuid.UUID:
        return uuid.UUID(bytes_le=bytes(self._take(16)))

    def slice(self, offset: int, length: int) -> memoryview:
        """The bytes at absolute ``offset`` for ``length``, checked; the cursor stays."""
        if offset < 0 or length < 0 or offset + length > len(self.buf):
            raise MalformedError(
                f"field of {length} bytes at offset {offset} outside a "
                f"{len(self.buf)}-byte buffer"
            )
        return self.buf[offset : offset + length]


def utf16(data: bytes | memoryview, *, lone_surrogates: bool = False) -> str:
    """Decode a UTF-16LE name from the wire; a bad encoding is a malformed message, or
    with ``lone_surrogates`` kept as such, for the caller to judge one name of many."""
    if len(data) % 2:
        raise MalformedError(f"UTF-16 string of odd length {len(data)}")
    try:
        return bytes(data).decode("utf-16-le", "surrogatepass" if lone_surrogates
                                  else "strict")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"bad UTF-16 string: {exc}") from None


def encode_utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def pad8(n: int) -> int:
    """Bytes of padding that bring ``n`` to a multiple of 8 (MS-SMB2 2.2.x alignment)."""
    return -n % 8


def guid_bytes(value: uuid.UUID) -> bytes:
    return value.bytes_le


def require_size(what: str, data: Sized, minimum: int) -> None:
    if len(data) < minimum:
        raise MalformedError(f"{what}: {len(data)} bytes, need at least {minimum}")


U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
