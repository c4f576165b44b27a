"""Extended attributes (MS-FSCC 2.4.15 FILE_FULL_EA_INFORMATION): the list a QUERY_INFO
of FileFullEaInformation returns and a SET_INFO of it takes.

Each entry: NextEntryOffset (4, 0 on the last; entries start on 4-byte boundaries),
Flags (1), EaNameLength (1), EaValueLength (2), the name in 8-bit characters followed by a
NUL that EaNameLength does not count, then the value. A SET_INFO entry with an empty value
removes that attribute (MS-FSA 2.1.5.14.3), so an empty value cannot be stored.
"""

from __future__ import annotations

import struct

from quicfs.smb2.errors import MalformedError

#: The longest name and value one entry can carry (1- and 2-byte length fields).
MAX_NAME = 255
MAX_VALUE = 65535


def pack_eas(items: list[tuple[bytes, bytes]]) -> bytes:
    """Entries for a SET_INFO; an empty value asks for the attribute's removal."""
    out = bytearray()
    for i, (name, value) in enumerate(items):
        if not 0 < len(name) <= MAX_NAME or len(value) > MAX_VALUE or b"\0" in name:
            raise ValueError("extended attribute name or value out of range")
        entry = struct.pack("<IBBH", 0, 0, len(name), len(value)) + name + b"\0" + value
        if i != len(items) - 1:
            entry += bytes(-len(entry) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return bytes(out)


def unpack_eas(data: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """The (name, value) pairs of a QUERY_INFO answer, in the server's order."""
    buf = bytes(data)
    items: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(buf):
        if pos + 8 > len(buf):
            raise MalformedError("FILE_FULL_EA_INFORMATION entry cut short")
        nxt, _flags, name_len, value_len = struct.unpack_from("<IBBH", buf, pos)
        name_end = pos + 8 + name_len
        value_end = name_end + 1 + value_len
        if value_end > len(buf):
            raise MalformedError("FILE_FULL_EA_INFORMATION entry overruns the buffer")
        items.append((buf[pos + 8:name_end], buf[name_end + 1:value_end]))
        if nxt == 0:
            break
        if nxt < value_end - pos:
            raise MalformedError("FILE_FULL_EA_INFORMATION entries overlap")
        pos += nxt
    return items


__all__ = ["MAX_NAME", "MAX_VALUE", "pack_eas", "unpack_eas"]
