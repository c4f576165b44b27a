"""Symbolic links stored as cifs.ko's "mfsymlinks" (Minshall+French) store them, so Linux
SMB clients see the same links: a regular file of exactly 1067 bytes,

    XSym\\n  LLLL\\n  <md5 of the target, 32 hex>\\n  <target>\\n  <spaces to 1067>

where LLLL is the target's length in decimal. Pure: bytes in, bytes out.

Links a Windows server keeps as reparse points are read too: the server names the target
when a CREATE stops on one (MS-SMB2 2.2.2.2.1), ``from_reparse``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quicfs.smb2.control import SymlinkError

MAGIC = b"XSym\n"
LEN_OFFSET = len(MAGIC)
MD5_OFFSET = LEN_OFFSET + 5
LINK_OFFSET = MD5_OFFSET + 33
LINK_MAXLEN = 1024
FILE_SIZE = LINK_OFFSET + LINK_MAXLEN  # 1067
#: The longest target readlink(2) gets through FUSE: a page, less the NUL.
REPARSE_MAXLEN = 4095


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


def from_reparse(link: SymlinkError) -> bytes:
    """The target of a Windows symbolic link as readlink(2) gives it: the name shown to
    users (PrintName; SubstituteName if there is none), '\\' made '/'. ValueError (why)
    for one Linux cannot hold, or that is not the named file's own."""
    if link.unparsed_path_length:
        raise ValueError("the link is one of the name's directories, not the name")
    target = (link.print_name or link.substitute_name).replace("\\", "/").encode()
    if not target or b"\0" in target:
        raise ValueError("an empty target, or one with NUL")
    if len(target) > REPARSE_MAXLEN:
        raise ValueError(f"a target of {len(target)} bytes (at most {REPARSE_MAXLEN})")
    return target
