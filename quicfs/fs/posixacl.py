"""POSIX access control lists, in the form Linux hands them to a FUSE file system: the
value of ``system.posix_acl_access`` / ``system.posix_acl_default`` (a little-endian u32
version 2, then entries of u16 tag, u16 permissions, u32 id; include/uapi/linux/
posix_acl_xattr.h).

With FUSE_POSIX_ACL the kernel checks access against these lists, but leaves three things
to the file system (fs/fuse/acl.c): keeping the mode in step when a list is set, keeping
the list in step when the mode changes (chmod), and handing a directory's default list
down to what is created in it. This module does those, as fs/posix_acl.c does for local
file systems (posix_acl_equiv_mode, posix_acl_chmod, posix_acl_create). Pure: bytes and
modes in, bytes and modes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"

VERSION = 2
USER_OBJ = 0x01
USER = 0x02
GROUP_OBJ = 0x04
GROUP = 0x08
MASK = 0x10
OTHER = 0x20
_TAGS = (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER)
UNDEFINED_ID = 0xFFFFFFFF

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


@dataclass(frozen=True, slots=True)
class Entry:
    tag: int
    perm: int
    id: int = UNDEFINED_ID


def decode(value: bytes) -> list[Entry]:
    """The entries of an xattr value; ValueError if it is not one."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise ValueError("not a POSIX ACL: wrong length")
    if _HEADER.unpack_from(value)[0] != VERSION:
        raise ValueError("not a POSIX ACL: wrong version")
    entries = [Entry(*_ENTRY.unpack_from(value, off))
               for off in range(_HEADER.size, len(value), _ENTRY.size)]
    for e in entries:
        if e.tag not in _TAGS or e.perm & ~0o7:
            raise ValueError("not a POSIX ACL: bad entry")
    return entries


def encode(entries: list[Entry]) -> bytes:
    return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.id)
                                            for e in entries)


def mode_of(entries: list[Entry]) -> tuple[int, bool]:
    """The permission bits a list gives, and whether the mode says all of it (only the
    owner, group and other entries: no list need be kept). With a mask entry, the group
    bits are the mask's (posix_acl_equiv_mode)."""
    mode = 0
    equivalent = True
    for e in entries:
        if e.tag == USER_OBJ:
            mode |= e.perm << 6
        elif e.tag == GROUP_OBJ:
            mode |= e.perm << 3
        elif e.tag == OTHER:
            mode |= e.perm
        elif e.tag == MASK:
            mode = (mode & ~0o070) | e.perm << 3
            equivalent = False
        else:
            equivalent = False
    return mode, equivalent


def chmod(entries: list[Entry], mode: int) -> list[Entry]:
    """The list after chmod to ``mode``: the owner, other and mask entries take its bits
    (the group entry when there is no mask), named entries stay (posix_acl_chmod)."""
    has_mask = any(e.tag == MASK for e in entries)
    out = []
    for e in entries:
        if e.tag == USER_OBJ:
            e = Entry(e.tag, mode >> 6 & 7, e.id)
        elif e.tag == MASK or (e.tag == GROUP_OBJ and not has_mask):
            e = Entry(e.tag, mode >> 3 & 7, e.id)
        elif e.tag == OTHER:
            e = Entry(e.tag, mode & 7, e.id)
        out.append(e)
    return out


def create(default: list[Entry], mode: int) -> tuple[int, list[Entry] | None]:
    """What a new file in a directory with the ``default`` list gets, asked for with
    ``mode``: the list cut down to ``mode``'s bits, and ``mode`` cut down to the list's
    (posix_acl_create_masq); the list is None when the mode says it all."""
    perms = mode & 0o777
    out = []
    masked = None
    group_obj = None
    equivalent = True
    for e in default:
        if e.tag == USER_OBJ:
            e = Entry(e.tag, e.perm & perms >> 6, e.id)
            perms &= e.perm << 6 | ~0o700
        elif e.tag == OTHER:
            e = Entry(e.tag, e.perm & perms, e.id)
            perms &= e.perm | ~0o007
        elif e.tag == MASK:
            masked = len(out)
            equivalent = False
        elif e.tag == GROUP_OBJ:
            group_obj = len(out)
        else:
            equivalent = False
        out.append(e)
    # The group bits cut the mask entry, or the group entry when there is none.
    at = masked if masked is not None else group_obj
    if at is not None:
        e = out[at]
        out[at] = Entry(e.tag, e.perm & perms >> 3, e.id)
        perms &= out[at].perm << 3 | ~0o070
    new_mode = (mode & ~0o777) | (perms & 0o777)
    return new_mode, None if equivalent else out


__all__ = ["ACCESS", "DEFAULT", "Entry", "chmod", "create", "decode", "encode", "mode_of"]
