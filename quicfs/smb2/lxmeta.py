"""Linux owner, group, mode and device number kept in a file's extended attributes,
under the names and layout WSL uses on NTFS (and cifs.ko reads for its WSL-style special
files): ``$LXUID``, ``$LXGID`` and ``$LXMOD`` are little-endian u32s (the mode with its
file type bits), ``$LXDEV`` a little-endian u64 with the major number in the low half and
the minor in the high half. Each may be missing; the mount then falls back to its options.

Other Linux xattrs the mount keeps go in EAs named ``$`` and the xattr's name: the POSIX
ACLs (``$system.posix_acl_access``, ``$system.posix_acl_default``, their values as Linux
gives them) and ``trusted.*`` (``$trusted.NAME``). All of these are hidden from ``user.*``.

Pure: EA lists in, :class:`LxMeta` out, and back.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass

UID = b"$LXUID"
GID = b"$LXGID"
MODE = b"$LXMOD"
DEV = b"$LXDEV"
NAMES = (UID, GID, MODE, DEV)
ACL = b"$system.posix_acl_access"
DEFAULT_ACL = b"$system.posix_acl_default"
TRUSTED = b"$trusted."
#: Upper case, as compared (SMB compares EA names without case).
_KEPT = frozenset(n.upper() for n in (*NAMES, ACL, DEFAULT_ACL))
_TRUSTED_UPPER = TRUSTED.upper()

#: File types a regular SMB file may stand for through $LXMOD (a FIFO, a socket, a device
#: node): the server sees an empty file.
SPECIAL_TYPES = frozenset({stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK})
#: (uid_t)-1 and (gid_t)-1: never an owner.
NO_OWNER = 0xFFFFFFFF
#: Those that open a device: shown only on a mount told ``dev`` (fs/mountflags.py).
DEVICE_TYPES = frozenset({stat.S_IFCHR, stat.S_IFBLK})


@dataclass(frozen=True, slots=True)
class LxMeta:
    uid: int | None = None
    gid: int | None = None
    #: st_mode with its type bits.
    mode: int | None = None
    rdev: int | None = None
    #: The POSIX ACLs (xattr values); None: none. To encode, b"" removes one.
    acl: bytes | None = None
    default_acl: bytes | None = None

    @property
    def special_type(self) -> int | None:
        """S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK when the file stands for one."""
        if self.mode is None:
            return None
        kind = stat.S_IFMT(self.mode)
        return kind if kind in SPECIAL_TYPES else None


def reserved(name: bytes) -> bool:
    """One of ours: hidden from user.* xattrs (SMB compares EA names without case)."""
    upper = name.upper()
    return upper in _KEPT or upper.startswith(_TRUSTED_UPPER)


def trusted_name(name: bytes) -> bytes | None:
    """The trusted.* xattr name (without "trusted.") that EA ``name`` keeps, if any."""
    return name[len(TRUSTED):] if name.upper().startswith(_TRUSTED_UPPER) else None


def decode(eas: Iterable[tuple[bytes, bytes]]) -> LxMeta:
    """What ``eas`` (a FileFullEaInformation list) say; a value of the wrong length is
    ignored, as if missing."""
    found: dict[bytes, bytes] = {}
    for name, value in eas:
        upper = name.upper()
        if upper in _KEPT:
            found[upper] = value

    def u32(name: bytes) -> int | None:
        value = found.get(name)
        return struct.unpack("<I", value)[0] if value is not None and len(value) == 4 \
            else None

    rdev = None
    dev = found.get(DEV)
    if dev is not None and len(dev) == 8:
        both = struct.unpack("<Q", dev)[0]
        rdev = os.makedev(both & 0xFFFFFFFF, both >> 32)
    def owner(name: bytes) -> int | None:
        value = u32(name)
        # (uid_t)-1 is no owner (chown's "leave it"; the kernel would show 65534).
        return None if value == NO_OWNER else value

    return LxMeta(uid=owner(UID), gid=owner(GID), mode=u32(MODE), rdev=rdev,
                  acl=found.get(ACL.upper()), default_acl=found.get(DEFAULT_ACL.upper()))


def encode(meta: LxMeta) -> list[tuple[bytes, bytes]]:
    """The EA entries for what ``meta`` holds (fields left None are not written)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in ((UID, meta.uid), (GID, meta.gid), (MODE, meta.mode)):
        if value is not None:
            out.append((name, struct.pack("<I", value & 0xFFFFFFFF)))
    if meta.rdev is not None:
        both = os.major(meta.rdev) | os.minor(meta.rdev) << 32
        out.append((DEV, struct.pack("<Q", both)))
    for name, acl in ((ACL, meta.acl), (DEFAULT_ACL, meta.default_acl)):
        if acl is not None:
            out.append((name, acl))
    return out


__all__ = ["ACL", "DEFAULT_ACL", "DEV", "DEVICE_TYPES", "GID", "MODE", "NAMES", "TRUSTED",
           "UID", "LxMeta", "decode", "encode", "reserved", "trusted_name"]
