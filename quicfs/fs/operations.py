"""pyfuse3 operations over a connected share: the kernel's requests, each handed to the
owner of its concept.

The kernel speaks in inodes and handles; SMB in paths and FileIds. The owners, built here
and wired to each other as they are built:

- ``inodes`` (inodes.py): inode numbers and the names that reach them;
- ``handles`` (handles.py): one record per open file handle, and what is open per inode;
- ``attrs`` (attrcache.py): attributes and listings known between round trips, and how
  the kernel is shown them;
- ``cache`` (pagecache.py): leases, and the handles parked after close under them;
- ``meta`` (meta.py): what the server says a file is, and the kernel's references;
- ``lookup``, ``attributes``, ``namespace``, ``directories``, ``opening``, ``io``,
  ``xattrs``: one kind of request each.

Errors from the client (``SMBError`` and the rest of the tree) become errno at the FUSE
edge (edge.py), and nowhere else.
"""

from __future__ import annotations

from typing import Any

import pyfuse3
import trio

from quicfs.client.share import Share
from quicfs.fs.attrcache import IO_SIZE, AttrCache
from quicfs.fs.attributes import Attributes
from quicfs.fs.directories import Directories
from quicfs.fs.edge import fuse_errors
from quicfs.fs.fileio import FileIO
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import InodeTable
from quicfs.fs.known import KnownNames
from quicfs.fs.lookup import Lookup
from quicfs.fs.meta import Meta
from quicfs.fs.namespace import Namespace
from quicfs.fs.opening import Opening
from quicfs.fs.pagecache import PageCache
from quicfs.fs.screen import Screen
from quicfs.fs.xattrs import XAttrs
from quicfs.options import Options


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, share: Share, opts: Options, nursery: trio.Nursery) -> None:
        """``nursery``: the mount's, where background writes, read-ahead and parked
        handles live as long as the mount."""
        super().__init__()
        self.share = share
        #: With metadata the kernel checks POSIX ACLs too (FUSE_POSIX_ACL); they are kept
        #: in EAs, and the mode kept in step with them here (posixacl.py).
        self.enable_acl = opts.metadata
        # The share's directory mounted (//host/share/PATH) is inode 1.
        self.inodes = inodes = InodeTable(share.url.path)
        #: Directories whose every name we know for now: their LOOKUPs need no round trip.
        known = KnownNames(opts.actimeo, share.dir_leases.alive)
        #: Names and attributes from the server pass here before the kernel sees them.
        self.screen = screen = Screen()
        self.handles = handles = HandleTable()
        self.attrs = attrs = AttrCache(opts, inodes, known, screen, handles, share.dir_leases)
        self.cache = cache = PageCache(share.leases, nursery, hold=opts.closetimeo,
                                       drain=handles.drain, drop_pages=attrs.drop)
        if share.uplink is not None:
            share.uplink.on_reconnect.append(cache.connection_replaced)
        self.meta = meta = Meta(share, opts, inodes, known, screen, attrs, handles, cache)
        self.io = io = FileIO(opts, inodes, handles, attrs, cache, nursery)
        self.lookups = Lookup(share, opts, inodes, known, screen, attrs, handles, meta)
        self.attributes = Attributes(share, opts, inodes, attrs, handles, meta, io)
        self.namespace = Namespace(share, opts, inodes, known, attrs, handles, cache, meta)
        self.directories = Directories(share, inodes, known, screen, attrs, handles, meta,
                                       io, nursery)
        self.opening = Opening(share, opts, inodes, handles, attrs, cache, meta, io, nursery)
        self.xattrs = XAttrs(share, opts, inodes, screen, attrs, meta)

    def stats(self) -> dict[str, int]:
        leases = self.share.dir_leases
        return {"open_files": len(self.handles), "lease_breaks": self.share.leases.breaks,
                "parked_handles": self.cache.parked_count,
                "directory_leases": leases.held, "directory_leases_taken": leases.taken,
                "directory_leases_broken": leases.broken}

    async def settle(self) -> None:
        """At unmount: what close(2)s left behind is sent before the mount's tasks end."""
        await self.io.settle()

    # ------------------------------------------------------------------ metadata
    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None
                     ) -> pyfuse3.EntryAttributes:
        return await self.lookups.lookup(parent_inode, name)

    @fuse_errors
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return await self.attributes.getattr(inode)

    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None, ctx: Any
                      ) -> pyfuse3.EntryAttributes:
        return await self.attributes.setattr(inode, attr, fields, fh,
                                             getattr(ctx, "pid", None))

    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.meta.forget(inode, count)

    @fuse_errors
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        info = await self.share.statfs()
        s = pyfuse3.StatvfsData()
        # The size I/O is best done in, as st_blksize; blocks count in allocation units
        # (f_frsize). glibc's posix_fallocate, which FUSE leaves to write a byte per
        # f_bsize (at most 4096), then writes a quarter of what Samba's 1024 would cost.
        s.f_bsize = max(IO_SIZE, info.bytes_per_allocation_unit)
        s.f_frsize = info.bytes_per_allocation_unit
        s.f_blocks = info.total_allocation_units
        s.f_bfree = info.actual_available_allocation_units
        s.f_bavail = info.caller_available_allocation_units
        s.f_files = 0
        s.f_ffree = 0
        s.f_favail = 0
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------------ xattrs
    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        return await self.xattrs.get(inode, name)

    @fuse_errors
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return await self.xattrs.list(inode, ctx)

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        await self.xattrs.set(inode, name, value, ctx)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        await self.xattrs.remove(inode, name, ctx)

    # ------------------------------------------------------------------ directories
    @fuse_errors
    async def opendir(self, inode: int, ctx: Any) -> int:
        return await self.directories.opendir(inode)

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        await self.directories.readdir(fh, start_id, token)

    async def releasedir(self, fh: int) -> None:
        await self.directories.releasedir(fh)

    # ------------------------------------------------------------------ names
    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        return await self.namespace.mkdir(parent_inode, name, mode, ctx)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        return await self.namespace.mknod(parent_inode, name, mode, rdev, ctx)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.namespace.rmdir(parent_inode, name)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.namespace.unlink(parent_inode, name)

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Any) -> None:
        await self.namespace.rename(parent_inode_old, name_old, parent_inode_new, name_new,
                                    flags)

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any
                      ) -> pyfuse3.EntryAttributes:
        return await self.namespace.symlink(parent_inode, name, target, ctx)

    @fuse_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return await self.namespace.readlink(inode)

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any
                   ) -> pyfuse3.EntryAttributes:
        return await self.namespace.link(inode, new_parent_inode, new_name)

    # ------------------------------------------------------------------ files
    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return await self.opening.open(inode, flags, ctx)

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        return await self.opening.create(parent_inode, name, mode, flags, ctx)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.io.read(fh, off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.io.write(fh, off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        await self.io.flush(fh)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.io.fsync(fh)

    @fuse_errors
    async def release(self, fh: int) -> None:
        await self.io.release(fh)


__all__ = ["Operations"]
