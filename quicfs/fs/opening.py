"""open(2) and creat(2): an SMB Open under the inode's lease key (or a parked one taken
back, pagecache.py), entered in the handle table with its write-behind and read-ahead."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from quicfs.client.open import Open
from quicfs.client.share import Share, create_mode
from quicfs.errors import SMBError
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.fileio import FileIO
from quicfs.fs.handles import FileHandle, HandleTable
from quicfs.fs.inodes import InodeTable, join
from quicfs.fs.meta import Meta
from quicfs.fs.pagecache import PageCache
from quicfs.fs.readahead import HEAD, ReadAhead
from quicfs.fs.writeback import WriteBehind
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import CreateAction
from quicfs.smb2.lxmeta import LxMeta
from quicfs.smb2.status import Status


@dataclass(eq=False)
class Opening:
    share: Share
    opts: Options
    inodes: InodeTable
    handles: HandleTable
    attrs: AttrCache
    cache: PageCache
    meta: Meta
    io: FileIO
    nursery: trio.Nursery

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        path = self.inodes.path(inode)
        await self.io.sent_behind(inode)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if writing:
            self.attrs.check_writable()
        # Held attributes are of the opens before: this one asks the server again.
        self.handles.unhold(inode)
        handle = self.cache.take_parked(inode, writable=writing)
        reused = handle is not None
        if handle is None:
            handle = await self._open_leased(inode, path, "r+" if writing else "r",
                                             head=0 if writing else HEAD)
        keep = self.cache.opened(inode, handle, reused=reused)
        fh = self._track(inode, handle, ctx, writing, writing and bool(flags & os.O_DIRECT))
        if flags & os.O_TRUNC and writing:
            self.attrs.write_moves_mtime(inode)
            self.handles.invalidate_reads(inode)  # other handles' read-ahead is of old data
            await handle.set_end_of_file(0)
        # Close-to-open consistency (as cifs.ko): the kernel keeps its cached pages only
        # while a lease has promised, since they were read, that nobody changed the file.
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self.attrs.check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        how = create_mode(exclusive=bool(flags & os.O_EXCL), truncate=bool(flags & os.O_TRUNC))
        known = self.inodes.inode_of(path)
        lx = None
        if self.opts.metadata:
            lx = await self.meta.new_lx(parent_inode, stat.S_IFREG | mode, ctx)
        handle = await self._create_leased(known, path, how, lx)
        if handle.created.create_action == CreateAction.CREATED:
            self.attrs.entries_changed(parent_inode)
        st = handle.created_stat()
        if st is None:
            st = await self.meta.stat(path)
        elif lx is not None:
            st = dataclasses.replace(st, lx=lx)
        inode = await self.meta.remember(path, st)
        if self.cache.key_of(inode) not in (None, handle.lease_key):
            # The server gave the new file a number an old one had (ext4 reuses them):
            # the inode's lease bookkeeping was the old file's.
            await self.cache.rekey(inode)
        self.cache.opened(inode, handle, reused=False)
        self.handles.invalidate_reads(inode)  # other handles' read-ahead is of old data
        fh = self._track(inode, handle, ctx, True, bool(flags & os.O_DIRECT))
        self.handles.unhold(inode)
        self.io.hold(inode, st)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), self.attrs.entry(inode, st)

    def _track(self, inode: int, handle: Open, ctx: Any, writable: bool, direct: bool
               ) -> int:
        """Enter ``handle`` in the handle table; the kernel's fh for it."""
        if writable:
            self.attrs.names_changed(inode)
        fh = self.handles.new_fh()
        self.handles.add(FileHandle(fh, inode, handle, ctx.pid, writable, direct,
                                    ReadAhead(handle, self.nursery),
                                    WriteBehind(handle, self.nursery)))
        return fh

    async def _open_leased(self, inode: int | None, path: str, mode: str,
                           eas: Sequence[tuple[bytes, bytes]] = (), head: int = 0) -> Open:
        """Open ``path`` under the lease key of ``inode`` (what the name was when we
        last looked), its first ``head`` bytes read in the same round trip (Share.open).
        A key the server has tied to another file (the name is another file now) is
        refused with STATUS_INVALID_PARAMETER: a new key, and again."""
        async with self.cache.creating(inode) as key:
            try:
                return await self.share.open(path, mode, lease_key=key, eas=eas, head=head)
            except SMBError as exc:
                if exc.status != Status.INVALID_PARAMETER or inode is None:
                    raise
            await self.cache.rekey(inode)
            return await self.share.open(path, mode, lease_key=self.cache.key(inode),
                                         eas=eas, head=head)

    async def _create_leased(self, inode: int | None, path: str, how: str,
                             lx: LxMeta | None) -> Open:
        """Open or create ``path`` as open(2) with O_CREAT (``how``: share.create_mode).
        With ``lx`` a new file gets its owner and mode in its CREATE (ExtA); but a
        server applies those to an existing file it overwrites too (Samba does), so that
        CREATE must find no file: one that exists is opened again without them."""
        if lx is None:
            return await self._open_leased(inode, path, how)
        try:
            return await self._open_leased(inode, path, "x", eas=lxmeta.encode(lx))
        except SMBError as exc:
            if how == "x" or exc.status != Status.OBJECT_NAME_COLLISION:
                raise
        return await self._open_leased(inode, path, how)
