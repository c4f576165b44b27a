"""Extended attributes and POSIX ACLs.

The "user." namespace is the file's SMB extended attributes (MS-FSCC 2.4.15), as cifs.ko
maps it. With mount option metadata, "trusted." and the POSIX ACLs are kept in EAs too,
under names of ours (smb2/lxmeta.py); other namespaces are not SMB's to keep. SMB compares
EA names without regard to case, and an empty value means "remove": one cannot be stored.
"""

from __future__ import annotations

import dataclasses
import errno
import stat
from dataclasses import dataclass
from typing import Any

import pyfuse3

from quicfs.client.share import Share
from quicfs.fs import posixacl
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.attrs import posix_attrs
from quicfs.fs.caller import in_group_or_root
from quicfs.fs.inodes import InodeTable
from quicfs.fs.meta import Meta
from quicfs.fs.screen import Screen
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import FileAttributes
from quicfs.smb2.ea import MAX_NAME as MAX_EA_NAME
from quicfs.smb2.ea import MAX_VALUE as MAX_EA_VALUE
from quicfs.smb2.lxmeta import LxMeta

#: The xattr namespace kept as SMB extended attributes.
USER_XATTR = b"user."
#: Kept too with mount option metadata, under EA names of ours (smb2/lxmeta.py).
TRUSTED_XATTR = b"trusted."
ACL_XATTRS = (posixacl.ACCESS, posixacl.DEFAULT)


def _find_ea(eas: list[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    """The value of EA ``key``; SMB compares EA names without regard to case."""
    for stored, value in eas:
        if stored.lower() == key.lower():
            return value
    return None


@dataclass(eq=False)
class XAttrs:
    share: Share
    opts: Options
    inodes: InodeTable
    screen: Screen
    attrs: AttrCache
    meta: Meta

    async def get(self, inode: int, name: bytes) -> bytes:
        if self.opts.metadata and name in ACL_XATTRS:
            # Asked for by the kernel's permission checks too: from what the last lookup
            # read when it can be.
            lx = await self.meta.lx(inode)
            value = lx.acl if name == posixacl.ACCESS else lx.default_acl
        else:
            key = self._ea_key(name, errno.ENODATA, errno.ENODATA)
            value = _find_ea(await self.share.get_eas(self.inodes.path(inode)), key)
        if not value:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    async def list(self, inode: int, ctx: Any) -> list[bytes]:
        path = self.inodes.path(inode)
        eas = self.screen.eas(path, await self.share.get_eas(path))
        names = [USER_XATTR + stored for stored, _ in eas if not lxmeta.reserved(stored)]
        if self.opts.metadata:
            lx = lxmeta.decode(eas)
            names += [name for name, value in zip(ACL_XATTRS, (lx.acl, lx.default_acl),
                                                  strict=True) if value]
            if ctx.uid == 0:  # trusted.* is listed to CAP_SYS_ADMIN only
                names += [TRUSTED_XATTR + kept for stored, _ in eas
                          if (kept := lxmeta.trusted_name(stored)) is not None]
        return names

    async def set(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        self.attrs.check_writable()
        if self.opts.metadata and name in ACL_XATTRS:
            await self._set_acl(inode, name, value, ctx)
            return
        key = self._ea_key(name, errno.EOPNOTSUPP, errno.EPERM)
        if not value:
            raise pyfuse3.FUSEError(errno.EINVAL)  # SMB would take it as a removal
        if len(value) > MAX_EA_VALUE:
            raise pyfuse3.FUSEError(errno.E2BIG)
        self.attrs.touched(inode)
        await self.share.set_ea(self.inodes.path(inode), key, value)

    async def remove(self, inode: int, name: bytes, ctx: Any) -> None:
        self.attrs.check_writable()
        if self.opts.metadata and name in ACL_XATTRS:
            await self._set_acl(inode, name, None, ctx)
            return
        key = self._ea_key(name, errno.ENODATA, errno.ENODATA)
        path = self.inodes.path(inode)
        # Removing a missing EA succeeds in SMB; removexattr(2) says ENODATA.
        if _find_ea(await self.share.get_eas(path), key) is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        self.attrs.touched(inode)
        await self.share.set_ea(path, key, b"")

    def _ea_key(self, name: bytes, other_namespace: int, ours: int) -> bytes:
        """The EA name keeping xattr ``name``: ``other_namespace`` is the errno for one
        not kept, ``ours`` for a user.* name that is one of the mount's own EAs."""
        if name.startswith(USER_XATTR):
            key = name[len(USER_XATTR):]
            if lxmeta.reserved(key):
                raise pyfuse3.FUSEError(ours)  # the owner, mode, ACLs: not user xattrs
        elif self.opts.metadata and name.startswith(TRUSTED_XATTR):
            rest = name[len(TRUSTED_XATTR):]
            key = lxmeta.TRUSTED + rest if rest else b""
        else:
            raise pyfuse3.FUSEError(other_namespace)
        if not key:
            raise pyfuse3.FUSEError(errno.EINVAL)
        if len(key) > MAX_EA_NAME:
            raise pyfuse3.FUSEError(errno.ERANGE)
        return key

    async def _set_acl(self, inode: int, name: bytes, value: bytes | None, ctx: Any
                       ) -> None:
        """Set (``value``) or remove (None) a POSIX ACL. The kernel has checked the list
        and that the caller owns the file; the mode is ours to keep in step: an access
        ACL's owner, mask and other entries are the mode's bits, and one the mode says
        all of is not kept (posix_acl_update_mode)."""
        entries = None
        if value is not None:
            try:
                entries = posixacl.decode(value)
            except ValueError:
                raise pyfuse3.FUSEError(errno.EINVAL) from None
        path = self.inodes.path(inode)
        self.attrs.touched(inode)
        st = await self.meta.stat(path)
        lx = st.lx or LxMeta()
        if name == posixacl.DEFAULT:
            if not st.is_dir:
                if entries:
                    raise pyfuse3.FUSEError(errno.EACCES)
                return  # (none to remove)
            change = LxMeta(default_acl=value if entries else b"")
        elif entries is None:
            change = LxMeta(acl=b"")
        else:
            perms, equivalent = posixacl.mode_of(entries)
            shown = posix_attrs(st, self.opts, lx)
            mode = (shown.mode & ~0o777) | perms
            if mode & stat.S_ISGID and not in_group_or_root(ctx, shown.gid):
                # The kernel leaves this to us without FUSE_SETXATTR_EXT (pyfuse3).
                mode &= ~stat.S_ISGID
            change = LxMeta(mode=mode, acl=b"" if equivalent else value)
        await self.share.set_eas(path, lxmeta.encode(change))
        # What the server now keeps (b"": removed).
        kept = {field: value or None for field in ("mode", "acl", "default_acl")
                if (value := getattr(change, field)) is not None}
        self.attrs.keep_lx(inode, dataclasses.replace(lx, **kept))
        if change.mode is not None and change.mode & 0o222 and not st.is_dir \
                and st.attributes & FileAttributes.READONLY:
            await self.meta.set_readonly(path, st, False)
