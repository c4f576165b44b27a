"""Names: mkdir, mknod, symlink, link, unlink, rmdir and rename.

POSIX frees a name at once, also while the file is open; SMB's delete-on-close keeps it
until the last close. A file or directory deleted or replaced while open here is set aside
under a hidden name first (``_set_aside``), deleted when its last handle closes.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from quicfs.client.share import Share
from quicfs.errors import SMBError
from quicfs.fs import mountflags, symlinks
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import InodeTable, join, link_view
from quicfs.fs.known import KnownNames
from quicfs.fs.meta import Meta
from quicfs.fs.pagecache import PageCache
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.status import Status

#: Names of files deleted while open, until their last close (_set_aside).
ASIDE = re.compile(r"\.quicfs-[0-9a-f]{16}")


@dataclass(eq=False)
class Namespace:
    share: Share
    opts: Options
    inodes: InodeTable
    known: KnownNames
    attrs: AttrCache
    handles: HandleTable
    cache: PageCache
    meta: Meta

    def _path(self, parent_inode: int, name: bytes) -> str:
        return join(self.inodes.path(parent_inode), os.fsdecode(name))

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        self.attrs.check_writable()
        path = self._path(parent_inode, name)
        eas = await self.meta.creation_eas(parent_inode, stat.S_IFDIR | mode, ctx)
        st = await self.share.mkdir(path, eas=eas)
        self.known.listed(path, (), trio.current_time())  # what we just made is empty
        self.attrs.entries_changed(parent_inode)
        return self.attrs.entry(await self.meta.remember(path, st), st)

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        """A regular file; with mount option metadata also a FIFO, socket or device
        node, kept as an empty file whose EAs say what it is (smb2/lxmeta.py). Without
        it, SMB has nothing to keep one in: EPERM, as cifs.ko answers; nor for a device
        node on a mount not told ``dev``, which would show it as a plain file."""
        self.attrs.check_writable()
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, *lxmeta.SPECIAL_TYPES) \
                or (kind != stat.S_IFREG and not self.opts.metadata) \
                or (kind in lxmeta.DEVICE_TYPES and not mountflags.trusts(self.opts.vfs)[1]):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._path(parent_inode, name)
        device = kind in (stat.S_IFCHR, stat.S_IFBLK)
        eas = await self.meta.creation_eas(parent_inode, mode, ctx,
                                           rdev=rdev if device else None)
        st = await self.share.make_empty(path, eas)
        self.attrs.entries_changed(parent_inode)
        return self.attrs.entry(await self.meta.remember(path, st), st)

    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any
                      ) -> pyfuse3.EntryAttributes:
        self.attrs.check_writable()
        path = self._path(parent_inode, name)
        try:
            data = symlinks.encode(target)
        except ValueError:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG) from None
        # A link's own mode means nothing; its owner does (sticky directories).
        eas = await self.meta.creation_eas(parent_inode, stat.S_IFLNK | 0o777, ctx, mode=None)
        st = await self.share.create_small(path, data, eas=eas)
        self.attrs.entries_changed(parent_inode)
        entry = self.attrs.entry(await self.meta.remember(path, st), st)
        entry.st_mode = stat.S_IFLNK | 0o777
        entry.st_size = len(target)
        return entry

    async def readlink(self, inode: int) -> bytes:
        target = await self.meta.read_link(self.inodes.path(inode))
        if target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return target

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes
                   ) -> pyfuse3.EntryAttributes:
        self.attrs.check_writable()
        src = self.inodes.path(inode)
        dst = self._path(new_parent_inode, new_name)
        self.attrs.touched(inode)
        st = await self.share.link(src, dst)
        self.attrs.entries_changed(new_parent_inode)
        # Both names are one file: the kernel expects the same inode back, whatever id
        # the server gives the new name.
        self.inodes.linked(dst, inode, link_view(st))
        self.known.changed(dst)
        return await self.meta.entry_for(inode, dst, st)

    async def rmdir(self, parent_inode: int, name: bytes) -> None:
        self.attrs.check_writable()
        path = self._path(parent_inode, name)
        self.attrs.touched(self.inodes.inode_of(path))  # its number may soon be another's
        await self._close_parked_under(path)
        if self._open_here(path):
            await self._set_aside(path)
        else:
            await self.share.rmdir(path)
        self._removed(parent_inode, path)

    async def unlink(self, parent_inode: int, name: bytes) -> None:
        self.attrs.check_writable()
        path = self._path(parent_inode, name)
        inode = self.inodes.inode_of(path)
        if inode is not None and not self.handles.is_open(inode):
            # Nobody left to tell, and its number may soon be another file's.
            self.handles.unsaved.pop(inode, None)
        self.attrs.touched(inode)
        await self._close_parked_under(path)
        if self._open_here(path):
            # POSIX frees the name at once; SMB's delete-on-close would keep it until
            # the last close (new opens of it refused as DELETE_PENDING).
            await self._set_aside(path)
        else:
            await self.share.remove(path)
        self._removed(parent_inode, path)

    def _removed(self, parent_inode: int, path: str) -> None:
        self.attrs.entries_changed(parent_inode)
        self.inodes.removed(path)
        self.known.forget(path)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int) -> None:
        self.attrs.check_writable()
        if flags & ~pyfuse3.RENAME_NOREPLACE:
            # RENAME_EXCHANGE and RENAME_WHITEOUT have no SMB counterpart: refused, never
            # done as a plain rename.
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._path(parent_inode_old, name_old)
        new = self._path(parent_inode_new, name_new)
        replace = not flags & pyfuse3.RENAME_NOREPLACE
        self.attrs.touched(self.inodes.inode_of(old))
        self.attrs.touched(self.inodes.inode_of(new))
        await self._close_parked_under(old, new)
        try:
            await self.share.rename(old, new, replace=replace)
        except SMBError as exc:
            if not replace or exc.status not in (Status.OBJECT_NAME_COLLISION,
                                                 Status.ACCESS_DENIED,
                                                 Status.SHARING_VIOLATION):
                raise
            # SMB will not replace a directory, nor a file that is open; POSIX rename
            # replaces both (an empty directory; an open file lives on unnamed). The
            # target goes aside first, deleted when its last handle closes.
            target = await self.meta.stat(new)
            if not target.is_dir and not self._open_here(new):
                raise  # refused for another reason (permissions, another client's open)
            source = await self.meta.stat(old)
            if source.is_dir != target.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR if source.is_dir
                                        else errno.EISDIR) from None
            await self._set_aside(new)
            await self.share.rename(old, new, replace=True)
        for parent in {parent_inode_old, parent_inode_new}:
            self.attrs.entries_changed(parent)
        self.inodes.renamed(old, new)
        self.known.forget(old)
        self.known.forget(new)  # a directory replaced: what was listed in it goes
        self.known.changed(new)

    # ------------------------------------------------------------------ open while removed
    def _open_here(self, path: str) -> bool:
        """Whether a program here holds ``path`` open (a file, or a directory)."""
        inode = self.inodes.inode_of(path)
        return inode is not None and (self.handles.is_open(inode)
                                      or self.handles.dir_open(inode))

    def _under(self, inodes: Iterable[int], paths: Sequence[str]) -> set[int]:
        """Those of ``inodes`` named by one of ``paths`` or below it."""
        found = set()
        for inode in inodes:
            names = self.inodes.names(inode)
            # A handle whose names the kernel forgot may sit anywhere: it counts too.
            if not names or any(n == p or n.startswith(p + "/") for n in names
                                for p in paths):
                found.add(inode)
        return found

    async def _close_parked_under(self, *paths: str) -> None:
        """Handles parked on ``paths`` or below close before those are renamed or
        deleted: SMB refuses to rename a directory with open files inside, and a deleted
        name stays pending while a handle is open (an rmdir of its directory then fails).
        Releases still under way there finish first: they park or close their handles.

        Not in the compound of the rename or delete: its CREATE may go async (a lease
        to break), which a server allows only first in a compound (Tree.chain)."""
        for inode in self._under(self.handles.being_released(), paths):
            await self.handles.released(inode)
        parked = self._under(self.cache.parked_inodes(), paths)
        if parked:  # most renames and deletes find none: no nursery for them
            async with trio.open_nursery() as nursery:
                for inode in parked:
                    nursery.start_soon(self.cache.close_parked, inode)

    async def _set_aside(self, path: str) -> None:
        """Delete ``path`` now although it is open: its name is free at once. Until its
        last close it waits under a hidden name at the share's root, not in its own
        directory: POSIX lets that be removed at once (and the kernel's RELEASE of a
        closed file may come late: close(2) does not wait for it). Where the root is
        not ours to write, it waits beside its old name."""
        aside = f".quicfs-{secrets.token_hex(8)}"
        try:
            await self._aside_to(path, aside)
        except SMBError as exc:
            here = join(path.rpartition("/")[0], aside)
            if exc.status != Status.ACCESS_DENIED or here == aside:
                raise
            await self._aside_to(path, here)

    async def _aside_to(self, path: str, aside: str) -> None:
        try:
            await self.share.set_aside(path, aside)
        except SMBError as exc:
            if exc.status == Status.DIRECTORY_NOT_EMPTY:
                await self.share.rename(aside, path)
                raise pyfuse3.FUSEError(errno.ENOTEMPTY) from None
            raise
