"""What a file is, as the server keeps it: its attributes, its Linux owner and mode (mount
option metadata: kept in EAs, smb2/lxmeta.py), whether it is a symbolic link; and the
kernel's references that name it (an inode number per file, inodes.py)."""

from __future__ import annotations

import dataclasses
import logging
import stat
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pyfuse3

from quicfs.client.open import FileStat
from quicfs.client.share import Share
from quicfs.errors import MalformedError, QuicfsError, SMBError
from quicfs.fs import posixacl, symlinks
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.caller import in_group_or_root
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import InodeTable, link_view
from quicfs.fs.known import KnownNames
from quicfs.fs.pagecache import PageCache
from quicfs.fs.screen import Screen
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import FileAttributes
from quicfs.smb2.lxmeta import LxMeta
from quicfs.smb2.status import Status

log = logging.getLogger("quicfs.fs")


def acl_entries(value: bytes | None) -> list[posixacl.Entry] | None:
    """A kept ACL's entries; None when there is none (or what is kept is not one)."""
    if not value:
        return None
    try:
        return posixacl.decode(value)
    except ValueError:
        return None


def may_be_link(st: FileStat) -> bool:
    """Whether ``st`` may be a symbolic link's: a reparse point, or a file of an
    mfsymlink's size (quicfs/fs/symlinks.py)."""
    return bool(st.attributes & FileAttributes.REPARSE_POINT) \
        or (not st.is_dir and st.size == symlinks.FILE_SIZE)


@dataclass(eq=False)
class Meta:
    share: Share
    opts: Options
    inodes: InodeTable
    known: KnownNames
    screen: Screen
    attrs: AttrCache
    handles: HandleTable
    cache: PageCache

    async def stat(self, path: str) -> FileStat:
        lease = self.cache.writing_lease(self.inodes.inode_of(path))
        try:
            return await self.share.stat(path, lx=self.opts.metadata, lease=lease)
        except MalformedError as exc:
            if not self.opts.metadata:
                raise
            # Perhaps only its EA list is broken: asked again without it, the file
            # keeps its name and shows the mount's defaults (a broken answer to the
            # rest still fails).
            st = await self.share.stat(path, lease=lease)
            return dataclasses.replace(st, lx=self._no_lx(path, exc))

    async def set_readonly(self, path: str, st: FileStat, readonly: bool) -> FileStat | None:
        """The read-only attribute on or off, if it is not so already; the attributes
        after (``st`` if nothing changed; None with mount option metadata, where a stat
        reads the EAs too)."""
        attrs = st.attributes & ~FileAttributes.NORMAL
        attrs = (attrs | FileAttributes.READONLY) if readonly \
            else (attrs & ~FileAttributes.READONLY)
        if attrs == st.attributes & ~FileAttributes.NORMAL:
            return st
        return await self.share.set_times(path, attributes=FileAttributes(attrs),
                                          stat_after=not self.opts.metadata)

    # ------------------------------------------------------------------ Linux metadata
    def _no_lx(self, path: str, exc: QuicfsError) -> LxMeta:
        """The Linux metadata of a file whose EA list the server sent malformed: none
        (the mount's defaults), logged by kind."""
        self.screen.refused.note("an EA list that is malformed (the file shows the "
                                 "mount's defaults)", lambda: f"{path or '/'}: {exc}",
                                 time.monotonic())
        return LxMeta()

    async def lx_of(self, path: str, eas: Awaitable[list[tuple[bytes, bytes]]]) -> LxMeta:
        """The Linux metadata ``eas`` (a query of ``path``'s EAs) hold; a malformed
        list costs the file its metadata only."""
        try:
            return lxmeta.decode(await eas)
        except MalformedError as exc:
            return self._no_lx(path, exc)

    async def lx(self, inode: int) -> LxMeta:
        """``inode``'s Linux metadata, read within actimeo."""
        known = self.attrs.lx_known(inode, fresh=True)
        if known is None:
            handle = self.handles.first(inode)
            if handle is not None:  # (which works once every name of it is gone, too)
                known = await self.lx_of(handle.open.name, handle.open.get_eas())
            else:
                known = (await self.stat(self.inodes.path(inode))).lx or LxMeta()
            self.attrs.keep_lx(inode, known)
        return known

    def lx_wanted(self, st: FileStat, inode: int) -> bool:
        """Whether a listed entry's owner and mode must be read from its EAs (a listing
        does not carry them): programs that list mostly stat what they list (ls -l,
        rm -r, du, cp -r), and a window of files read at once costs far less than a
        getattr each later."""
        return self.opts.metadata and bool(st.ea_size) and st.lx is None \
            and (not inode or self.attrs.lx_known(inode, fresh=True) is None)

    async def new_lx(self, parent_inode: int, mode: int, ctx: Any) -> LxMeta:
        """Owner, group, mode and ACLs of a file the caller creates: the caller's ids and
        mode less its umask, or cut down by the directory's default ACL, which a new
        directory inherits (posix_acl_create); in a set-group-ID directory, the
        directory's group (and a new directory is set-group-ID too), as Linux file
        systems do (inode_init_owner)."""
        gid = ctx.gid
        parent = await self.lx(parent_inode)
        default = acl_entries(parent.default_acl)
        acl = inherited = None
        if default and not stat.S_ISLNK(mode):
            # (The kernel took the umask off already: pyfuse3 does not ask for
            # FUSE_DONT_MASK, which would leave that to us.)
            mode, access = posixacl.create(default, mode)
            acl = posixacl.encode(access) if access is not None else None
            inherited = parent.default_acl if stat.S_ISDIR(mode) else None
        else:
            mode &= ~getattr(ctx, "umask", 0)
        if parent.mode is not None and parent.mode & stat.S_ISGID:
            gid = parent.gid if parent.gid is not None else gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        if not stat.S_ISDIR(mode) and mode & stat.S_ISGID and not in_group_or_root(ctx, gid):
            mode &= ~stat.S_ISGID  # not the caller's group to hand out
        return LxMeta(uid=ctx.uid, gid=gid, mode=mode, acl=acl, default_acl=inherited)

    async def creation_eas(self, parent_inode: int, mode: int, ctx: Any, /,
                           **fields: Any) -> list[tuple[bytes, bytes]]:
        """The EAs a new file is created with: none without mount option metadata, else
        ``new_lx``'s (``fields`` replace some of it)."""
        if not self.opts.metadata:
            return []
        meta = await self.new_lx(parent_inode, mode, ctx)
        return lxmeta.encode(dataclasses.replace(meta, **fields))

    # ------------------------------------------------------------------ symbolic links
    async def link_target(self, path: str, st: FileStat) -> bytes | None:
        """The target if ``path`` is a symbolic link: an mfsymlink file (only 1067-byte
        files are read) or a reparse point."""
        if not may_be_link(st):
            return None
        return await self.read_link(path)

    async def read_link(self, path: str) -> bytes | None:
        try:
            return symlinks.decode(await self.share.read_head(path, symlinks.FILE_SIZE))
        except SMBError as exc:
            if exc.status != Status.STOPPED_ON_SYMLINK:
                return None
        # A link the server will not follow (a Windows reparse point): it names the
        # target when asked (MS-SMB2 2.2.2.2.1). One we cannot read or Linux cannot
        # hold is shown as the file it is; opening it fails with ELOOP.
        try:
            return symlinks.from_reparse(await self.share.symlink_error(path))
        except (SMBError, MalformedError, ValueError) as exc:
            self.screen.refused.note("a symbolic link whose target cannot be shown (a "
                                     "file to us)", lambda exc=exc: f"{path}: {exc}",
                                     time.monotonic())
            return None

    async def entry_for(self, inode: int, path: str, st: FileStat) -> pyfuse3.EntryAttributes:
        """The kernel's entry for ``inode`` at ``path``: a symbolic link shows as one."""
        entry = self.attrs.entry(inode, st)
        target = await self.link_target(path, st)
        if target is not None:
            entry.st_mode = stat.S_IFLNK | 0o777
            entry.st_size = len(target)
        return entry

    # ------------------------------------------------------------------ the kernel's references
    async def remember(self, path: str, st: FileStat) -> int:
        """``path``'s inode (the server saying ``st`` of it), one kernel reference
        counted. A name joins the inode of another with its file id only when the
        server describes both alike (inodes.py); what we saw of that other may be stale
        (written since), so that name is asked about again first."""
        now = link_view(st)
        other = self.inodes.rival(path, st.file_id, now)
        if other is not None:
            try:
                fresh = await self.share.stat(
                    other, lease=self.cache.writing_lease(st.file_id))
            except SMBError as exc:
                log.debug("%s, another name of file id %d: %s", other, st.file_id, exc)
            else:
                if fresh.file_id == st.file_id:
                    self.inodes.saw(st.file_id, link_view(fresh))
        self.known.changed(path)
        return self.inodes.remember(path, st.file_id, now)

    def forget(self, inode: int, count: int) -> None:
        """The kernel gives back ``count`` references to ``inode``."""
        self.inodes.forget(inode, count)
        if not self.inodes.known(inode):
            self.cache.forget(inode)
            self.attrs.forget(inode)
            self.handles.unsaved.pop(inode, None)
