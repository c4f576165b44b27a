"""Symbolic links stored as cifs.ko's "mfsymlinks" (Minshall+French) store them, so Linux
SMB clients see the same links: a regular file of exactly 1067 bytes,

    XSym\\n  LLLL\\n  <md5 of the target, 32 hex>\\n  <target>\\n  <spaces to 1067>

where LLLL is the target's length in decimal. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib

MAGIC = b"XSym\n"
LEN_OFFSET = len(MAGIC)
MD5_OFFSET = LEN_OFFSET + 5
LINK_OFFSET = MD5_OFFSET + 33
LINK_MAXLEN = 1024
FILE_SIZE = LINK_OFFSET + LINK_MAXLEN  # 1067


def encode(target: bytes) -> bytes:
    if not target or len(target) > LINK_MAXLEN:
        raise ValueError(f"symlink target of {len(target)} bytes (1..{LINK_MAXLEN})")
    body = MAGIC + b"%04d\n" % len(target) + hashlib.md5(target).hexdigest().encode() + b"\n"
    body += target
    if len(body) < FILE_SIZE:
        body += b"\n"
    return body.ljust(FILE_SIZE, b" ")


def decode(data: bytes) -> bytes | None:
    """The target, or None if ``data`` is not a well-formed mfsymlink file."""
    if len(data) != FILE_SIZE or not data.startswith(MAGIC):
        return None
    try:
        length = int(data[LEN_OFFSET : LEN_OFFSET + 4])
    except ValueError:
        return None
    if not 0 < length <= LINK_MAXLEN:
        return None
    target = data[LINK_OFFSET : LINK_OFFSET + length]
    if b"\0" in target:
        return None  # readlink hands the kernel a C string: a NUL would cut it short
    if hashlib.md5(target).hexdigest().encode() != data[MD5_OFFSET : MD5_OFFSET + 32]:
        return None
    return target
