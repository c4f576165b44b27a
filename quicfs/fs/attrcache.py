"""What this mount knows of attributes and listings between round trips, and how it shows
them to the kernel.

The server's attributes lag what POSIX says in places (Samba moves a file's write time at
close, and reports its mtime as its change time), so the attributes the kernel gets are
the server's moved by what this mount did since: its writes, its explicit times, its
metadata changes. Directories' attributes and whole listings are kept for actimeo (or
while a directory lease covers them); any change made through this mount bumps a
generation that retires listings taken before it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import time

import pyfuse3
import trio

from quicfs.client.dirleases import DirectoryLeases
from quicfs.client.open import FileStat
from quicfs.fs.attrs import posix_attrs
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import InodeTable
from quicfs.fs.known import KnownNames
from quicfs.fs.listing import Listing
from quicfs.fs.screen import Screen
from quicfs.options import Options
from quicfs.smb2.lxmeta import LxMeta

log = logging.getLogger("quicfs.fs")

#: The I/O size we prefer (st_blksize, statfs f_bsize).
IO_SIZE = 65536


class AttrCache:
    def __init__(self, opts: Options, inodes: InodeTable, known: KnownNames, screen: Screen,
                 handles: HandleTable, dir_leases: DirectoryLeases) -> None:
        self.opts = opts
        self.inodes = inodes
        self.known = known
        self.screen = screen
        self.handles = handles
        self.dir_leases = dir_leases
        #: When a file was last written through this mount and the server has not been
        #: told yet (ns): SMB servers move a file's write time when they please (Samba:
        #: at close), POSIX at every write.
        self.written_at: dict[int, int] = {}
        #: inode -> times set explicitly (atime, mtime; None: not set) while a handle of
        #: ours writes it, to go through that handle at its flush (Attributes.setattr).
        self.times_due: dict[int, tuple[int | None, int | None]] = {}
        #: inode -> its Linux owner and mode as last read from its EAs (or set by us), and
        #: when (mount option metadata): a stat through an open handle or a listing may
        #: use it for actimeo; lookups read it afresh. (By age: ChangeTime cannot tell
        #: that EAs changed, Samba reports a file's mtime as its ChangeTime.)
        self._lx: dict[int, tuple[LxMeta, float]] = {}
        #: When this mount last changed a file's metadata (ns). Samba reports a file's
        #: mtime as its change time (smbd's get_change_timespec), so a link, chmod,
        #: utimes or setxattr would leave ctime where it was; POSIX moves it.
        self._ctime: dict[int, int] = {}
        #: Directories' attributes as the server last gave them, and when (trio time):
        #: answered for actimeo, with the times our own changes inside give them. The
        #: kernel forgets a directory's attributes at every create or unlink in it and
        #: asks again at the next lookup there; this spares that round trip.
        self._dir_held: dict[int, tuple[FileStat, float]] = {}
        # Complete listings reused within actimeo, as long as nothing changed through
        # this mount (any change bumps the generation).
        self._listings: dict[str, Listing] = {}
        self.generation = 0
        #: Handlers under way that change the server (fs/edge.py's CHANGING).
        self.changing = 0

    # ------------------------------------------------------------------ the kernel's view
    def entry(self, inode: int, st: FileStat) -> pyfuse3.EntryAttributes:
        st = self.screen.attrs(st)  # every attribute the kernel gets passes here
        due = self.times_due.get(inode)
        if due is not None:
            st = dataclasses.replace(st, atime_ns=st.atime_ns if due[0] is None else due[0],
                                     mtime_ns=st.mtime_ns if due[1] is None else due[1])
        written = self.written_at.get(inode)
        if written is not None and written > st.mtime_ns:
            st = dataclasses.replace(st, mtime_ns=written, ctime_ns=max(st.ctime_ns, written))
        changed = self._ctime.get(inode)
        if changed is not None and changed > st.ctime_ns:
            st = dataclasses.replace(st, ctime_ns=changed)
        lx = st.lx
        if lx is not None:
            if inode:
                self._lx[inode] = (lx, trio.current_time())
        elif self.opts.metadata and st.ea_size:
            lx = self.lx_known(inode, fresh=False)
        a = posix_attrs(st, self.opts, lx)
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode
        e.generation = 0
        e.entry_timeout = self.opts.actimeo
        e.attr_timeout = self.opts.actimeo
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        e.st_size = a.size
        e.st_blksize = IO_SIZE
        e.st_blocks = a.blocks
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        return e

    def negative(self) -> pyfuse3.EntryAttributes:
        """A "no such name" answer the kernel keeps for ``actimeo`` like a positive entry
        (inode 0: a negative dentry): a program that probes the same missing names
        again and again (make, shells, create-after-lookup) asks the server once. Our own
        create, mkdir, rename and link replace it at once; another client's new file
        shows within actimeo, as its changes to an existing file do."""
        e = pyfuse3.EntryAttributes()
        e.st_ino = 0
        e.entry_timeout = self.opts.actimeo
        return e

    async def drop(self, inode: int) -> None:
        """Our Read caching is gone: read-ahead, held attributes and the kernel's pages
        of ``inode`` go."""
        self.handles.invalidate_reads(inode)
        self.handles.unhold(inode)
        self.names_changed(inode)
        try:
            # In a thread: the kernel may wait on a page lock held by a read that only
            # this loop can answer.
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, inode, False)
        except OSError as exc:
            # ENOENT: the kernel holds nothing of this inode, so nothing to drop.
            log.debug("invalidate inode %d: %s", inode, exc)

    # ------------------------------------------------------------------ our changes
    def check_writable(self) -> None:
        """A change is about to be made: refused on a read-only mount."""
        if self.opts.ro:
            raise pyfuse3.FUSEError(errno.EROFS)
        self.changed()

    def changed(self) -> None:
        self.generation += 1
        self._listings.clear()

    def touched(self, inode: int | None) -> None:
        """This mount changes ``inode``'s metadata: its held attributes go, its ctime
        moves."""
        if inode is not None:
            self.handles.unhold(inode)
            self._dir_held.pop(inode, None)
            self._ctime[inode] = time.time_ns()
            self.names_changed(inode)

    def names_changed(self, inode: int) -> None:
        """What listings said of ``inode`` is no longer to be trusted: it is written or
        changed here, or another client's change broke our lease."""
        for path in self.inodes.names(inode):
            self.known.changed(path)

    def entries_changed(self, parent_inode: int) -> None:
        """A name in directory ``parent_inode`` was added or removed here: its mtime and
        ctime move (POSIX). Its held attributes stay: a directory shows 2 links whatever
        it holds (attrs.py), so a subdirectory made or removed changes nothing else."""
        self.written_at[parent_inode] = self._ctime[parent_inode] = time.time_ns()

    def wrote(self, inode: int) -> None:
        """A write through this mount: mtime moves now (POSIX), and a time set
        explicitly that waits for close no longer holds."""
        self.written_at[inode] = time.time_ns()
        self.write_moves_mtime(inode)

    def write_moves_mtime(self, inode: int) -> None:
        """A write or truncate after utimensat moves mtime again (POSIX): the time set
        explicitly that waits for close no longer holds."""
        due = self.times_due.get(inode)
        if due is not None and due[1] is not None:
            self.times_due[inode] = (due[0], None)

    # ------------------------------------------------------------------ directories
    def hold_dir(self, inode: int, st: FileStat, taken: float) -> None:
        """Directory attributes the server gave as of ``taken`` (trio time)."""
        if st.is_dir:
            self._dir_held[inode] = (st, taken)

    def unhold_dir(self, inode: int) -> None:
        self._dir_held.pop(inode, None)

    def dir_attrs(self, inode: int, path: str, *, leased: bool = False) -> FileStat | None:
        """A directory's attributes as held: for actimeo (unless ``leased``), and past
        it while directory leases cover them (client/dirleases.py)."""
        held = self._dir_held.get(inode)
        if held is None:
            return None
        st, taken = held
        if (not leased and trio.current_time() - taken < self.opts.actimeo) \
                or self.dir_leases.covers(path, taken):
            return st
        return None

    def listing(self, path: str) -> Listing | None:
        """A whole listing of ``path`` taken within actimeo with nothing changed here
        since."""
        cached = self._listings.get(path)
        if cached is None or cached.generation != self.generation \
                or trio.current_time() - cached.started >= self.opts.actimeo:
            return None
        return cached

    def keep_listing(self, listing: Listing) -> None:
        if listing.generation == self.generation:
            self._listings[listing.path] = listing

    # ------------------------------------------------------------------ Linux metadata
    def lx_known(self, inode: int, *, fresh: bool) -> LxMeta | None:
        """What we know of ``inode``'s Linux metadata (``fresh``: read within actimeo)."""
        known = self._lx.get(inode)
        if known is None or (fresh and trio.current_time() - known[1] >= self.opts.actimeo):
            return None
        return known[0]

    def keep_lx(self, inode: int, lx: LxMeta) -> None:
        self._lx[inode] = (lx, trio.current_time())

    def drop_lx(self, inode: int) -> None:
        self._lx.pop(inode, None)

    def forget(self, inode: int) -> None:
        """The kernel holds no reference to ``inode`` any more."""
        self._ctime.pop(inode, None)
        self._lx.pop(inode, None)
        self._dir_held.pop(inode, None)
        if not self.handles.is_open(inode):
            self.written_at.pop(inode, None)
            self.times_due.pop(inode, None)
