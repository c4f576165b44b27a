"""GETATTR and SETATTR: a file's attributes as the kernel asks for them, and changed.

An open file's attributes are held under its lease's Read caching and moved by our own
writes (handles.Held); a directory's for actimeo or while directory leases cover them
(attrcache.py); anything else is asked of the server, through an open handle when there
is one (one message instead of three, and it works once every name is gone).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyfuse3
import trio

from quicfs.client.open import FileStat, Open
from quicfs.client.share import Share
from quicfs.fs import posixacl
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.fileio import FileIO
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import ROOT_INODE, InodeTable
from quicfs.fs.meta import Meta, acl_entries
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import FileAttributes
from quicfs.smb2.lxmeta import LxMeta


@dataclass(eq=False)
class Attributes:
    share: Share
    opts: Options
    inodes: InodeTable
    attrs: AttrCache
    handles: HandleTable
    meta: Meta
    io: FileIO

    async def getattr(self, inode: int) -> pyfuse3.EntryAttributes:
        held = self.io.held_stat(inode)
        if held is not None:
            # Includes what is gathered here: no need to send it first.
            return self.attrs.entry(inode, held)
        await self.handles.drain(inode)
        handle = self.handles.first(inode)
        if handle is not None:
            # An open file is asked through its handle: that works even once every name
            # is gone (fstat after unlink), and costs one message instead of three.
            st = await self._stat_open(inode, handle.open)
            self.io.hold(inode, st)
            return self.attrs.entry(inode, st)
        if self.inodes.names(inode) == [] and inode != ROOT_INODE:
            opened = self.handles.open_dir(inode)
            if opened is not None:
                # An open directory that was removed (or replaced by a rename): fstat()
                # on it still answers, with no links left.
                e = self.attrs.entry(inode, opened.listing.entries[0][1])
                e.st_nlink = 0
                return e
        path = self.inodes.path(inode)
        held_dir = self.attrs.dir_attrs(inode, path)
        if held_dir is not None:
            return self.attrs.entry(inode, held_dir)
        asked = trio.current_time()
        st = await self.meta.stat(path)
        self.attrs.hold_dir(inode, st, asked)
        return await self.meta.entry_for(inode, path, st)

    async def _stat_open(self, inode: int, handle: Open) -> FileStat:
        st = await handle.stat()
        if self.opts.metadata and st.ea_size and self.attrs.lx_known(inode, fresh=True) is None:
            st = dataclasses.replace(st, lx=await self.meta.lx_of(handle.name,
                                                                  handle.get_eas()))
        return st

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None, pid: int | None
                      ) -> pyfuse3.EntryAttributes:
        path = self.inodes.path(inode)
        # An open file's attributes as held under its lease (sizes moved by our writes):
        # a chown without metadata (owners are not SMB's to keep) needs no round trip.
        held = self.io.held_stat(inode)
        self.attrs.touched(inode)
        times = fields.update_atime or fields.update_mtime
        # Times set by the process that writes the file (tar's futimens: the kernel
        # names no handle for it) may wait for its close; set by another (touch -d),
        # that process would hear of their failure never.
        if held is None or fields.update_size or fields.update_mode or (
                times and not self.handles.writes(inode, pid)) or (
                self.opts.metadata and (fields.update_uid or fields.update_gid)):
            held = None
            await self.handles.drain(inode)
        writable = False
        # The attributes after, when the last change made brought them back.
        st: FileStat | None = None
        if fields.update_size:
            held = None
            self.attrs.write_moves_mtime(inode)
            self.handles.invalidate_reads(inode)
            self.attrs.check_writable()
            handle = self.handles.get(fh) if fh is not None else None
            if handle is not None:
                await handle.open.set_end_of_file(attr.st_size)
            else:
                await self.share.truncate(path, attr.st_size)
        if times:
            self.attrs.check_writable()
            if fields.update_mtime:
                self.attrs.written_at.pop(inode, None)  # an explicit time wins
            atime = attr.st_atime_ns if fields.update_atime else None
            mtime = attr.st_mtime_ns if fields.update_mtime else None
            if held is not None:
                # A file we write (tar's futimens): the times go through our handle with
                # its last writes, at flush. Set on that handle they stay whatever it
                # writes before (MS-FSA 2.1.5.14.2): one round trip at close(2) where
                # sending them now would cost two (the writes gathered first, then the
                # times).
                due_atime, due_mtime = self.attrs.times_due.get(inode, (None, None))
                self.attrs.times_due[inode] = (due_atime if atime is None else atime,
                                               due_mtime if mtime is None else mtime)
            else:
                # With mount option metadata a stat reads the EAs too (Meta.stat):
                # asked apart.
                st = await self.share.set_times(path, atime_ns=atime, mtime_ns=mtime,
                                                stat_after=not self.opts.metadata)
        if self.opts.metadata and (fields.update_mode or fields.update_uid
                                   or fields.update_gid):
            self.attrs.check_writable()
            held = None
            await self._set_owner_and_mode(inode, path, attr, fields)
            st = None
            # Write bits given back: a read-only attribute (set by another client; this
            # mount keeps modes in $LXMOD) would still refuse writes.
            writable = fields.update_mode and bool(attr.st_mode & 0o222)
        elif fields.update_mode:
            # Of a mode, SMB keeps one bit: no write permission for anyone is the
            # read-only attribute (MS-FSCC 2.6), as cifs.ko maps it.
            # Asked afresh: another client's change of the DOS attributes breaks no
            # Read lease, so the held ones may be out of date.
            self.attrs.check_writable()
            st = st or await self.meta.stat(path)
            if not st.is_dir:
                st = await self.meta.set_readonly(path, st, not attr.st_mode & 0o222)
        # Without metadata, owner and group are not SMB's to keep (uid=/gid= set them).
        if st is None:
            st = held or await self.meta.stat(path)
        if writable and not st.is_dir and st.attributes & FileAttributes.READONLY:
            st = await self.meta.set_readonly(path, st, False) or await self.meta.stat(path)
        # Held while the file is open (ftruncate, fchmod): the getattr and the reads that
        # follow need not ask again (one compound, EAs in it, where a stat through the
        # handle would take two with mount option metadata).
        self.io.hold(inode, st)
        return await self.meta.entry_for(inode, path, st)

    async def _set_owner_and_mode(self, inode: int, path: str, attr: pyfuse3.EntryAttributes,
                                  fields: pyfuse3.SetattrFields) -> None:
        """chown and chmod with mount option metadata: kept in the file's EAs."""
        lx = LxMeta(uid=attr.st_uid if fields.update_uid else None,
                    gid=attr.st_gid if fields.update_gid else None,
                    mode=attr.st_mode if fields.update_mode else None)
        access = acl_entries((await self.meta.lx(inode)).acl) if fields.update_mode \
            else None
        if access:
            # chmod moves the ACL's owner, mask and other entries (posix_acl_chmod).
            lx = dataclasses.replace(lx, acl=posixacl.encode(
                posixacl.chmod(access, attr.st_mode)))
        await self.share.set_eas(path, lxmeta.encode(lx))
        self.attrs.drop_lx(inode)
