"""pyfuse3 operations over a connected share.

The kernel speaks in inodes and handles; SMB in paths and FileIds. The inode table maps
one to the other; each open file is an SMB Open kept in the handle table, under a lease
that decides what the kernel may cache (pagecache.py); directories stream page by page
as the kernel reads them (listing.py). Errors from the client
(``SMBError`` and the rest of the tree) become errno here, at the FUSE edge, and nowhere
else.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import pyfuse3
import trio

from quicfs.client.directory import DirectoryReader
from quicfs.client.interrupt import calling
from quicfs.client.open import FileStat, Open
from quicfs.client.share import Share, Whole, create_mode
from quicfs.errors import ConnectionLost, MalformedError, ProtocolError, QuicfsError, SMBError
from quicfs.fs import mountflags, posixacl, symlinks
from quicfs.fs.attrs import posix_attrs
from quicfs.fs.caller import in_group_or_root
from quicfs.fs.inodes import ROOT_INODE, InodeTable, join, link_view
from quicfs.fs.known import KnownNames
from quicfs.fs.listing import Listing
from quicfs.fs.pagecache import PageCache
from quicfs.fs.readahead import HEAD, ReadAhead
from quicfs.fs.screen import Screen
from quicfs.fs.writeback import WriteBehind
from quicfs.options import Options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import CreateAction, FileAttributes, FileInfoClass, LeaseState
from quicfs.smb2.ea import MAX_NAME as MAX_EA_NAME
from quicfs.smb2.ea import MAX_VALUE as MAX_EA_VALUE
from quicfs.smb2.info import FileAllInformation
from quicfs.smb2.lxmeta import LxMeta
from quicfs.smb2.status import Status

#: The xattr namespace kept as SMB extended attributes.
USER_XATTR = b"user."
#: Kept too with mount option metadata, under EA names of ours (smb2/lxmeta.py).
TRUSTED_XATTR = b"trusted."
ACL_XATTRS = (posixacl.ACCESS, posixacl.DEFAULT)

log = logging.getLogger("quicfs.fs")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


#: Handlers that name no caller: theirs is the process that opened the handle.
_BY_HANDLE = frozenset({"read", "write", "flush", "fsync"})
#: Handlers that change names, data or metadata on the server (writes land at flush,
#: fsync and release too): while one is under way, no listing taken for a lookup is
#: kept (Operations._snapshot), since it may show the server before or after the change.
_CHANGING = frozenset({"setattr", "mkdir", "mknod", "rmdir", "unlink", "rename", "symlink",
                       "link", "create", "setxattr", "removexattr", "write", "flush",
                       "fsync", "release"})


#: The I/O size we prefer (st_blksize, statfs f_bsize).
IO_SIZE = 65536


def fuse_errors(func: F) -> F:
    """Map the client's errors to FUSEError(errno): the one place it happens. And name
    the call's caller, whose signals may interrupt a wait for a lost server
    (client/interrupt.py); and count the handlers under way that change the server."""
    by_handle = func.__name__ in _BY_HANDLE
    changing = func.__name__ in _CHANGING

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not changing:
            return await _mapped(*args, **kwargs)
        ops = args[0]
        ops.changing += 1
        try:
            return await _mapped(*args, **kwargs)
        finally:
            ops.changing -= 1
            ops._changed()  # done: what a listing shows from now on is after it

    async def _mapped(*args: Any, **kwargs: Any) -> Any:
        if by_handle:
            pid = args[0].opener.get(args[1])
        elif isinstance(args[-1], pyfuse3.RequestContext):  # pyfuse3 passes it last
            pid = args[-1].pid
        else:
            ctx = next((a for a in args if isinstance(a, pyfuse3.RequestContext)), None)
            pid = ctx.pid if ctx is not None else None
        try:
            with calling(pid):
                return await func(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except SMBError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except ConnectionLost as exc:
            log.warning("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except QuicfsError as exc:
            log.warning("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.TooSlowError:
            raise pyfuse3.FUSEError(errno.ETIMEDOUT) from None
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except Exception:
            # A bug of ours must cost one call, never the mount (and every program
            # using it): EIO, and the traceback in the log.
            log.exception("%s failed", func.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _acl_entries(value: bytes | None) -> list[posixacl.Entry] | None:
    """A kept ACL's entries; None when there is none (or what is kept is not one)."""
    if not value:
        return None
    try:
        return posixacl.decode(value)
    except ValueError:
        return None


def _may_be_link(st: FileStat) -> bool:
    """Whether ``st`` may be a symbolic link's: a reparse point, or a file of an
    mfsymlink's size (quicfs/fs/symlinks.py)."""
    return bool(st.attributes & FileAttributes.REPARSE_POINT) \
        or (not st.is_dir and st.size == symlinks.FILE_SIZE)


def _find_ea(eas: list[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    """The value of EA ``key``; SMB compares EA names without regard to case."""
    for stored, value in eas:
        if stored.lower() == key.lower():
            return value
    return None


#: How many listed files a listing stats at once for their EAs (mount option metadata).
LX_WINDOW = 32

#: A LOOKUP of a directory not listed within actimeo lists it whole if one page of this
#: many bytes holds it (~500 entries of 20-character names): Operations._snapshot.
SNAPSHOT_PAGE = 64 * 1024
#: Seconds before a directory that page did not hold is tried again, and how many such
#: directories are remembered.
SNAPSHOT_RETRY = 30.0
#: With mount option closeflush=behind, close(2) of a file with at most this much
#: gathered (and under a Write lease) does not wait for it to reach the server.
BEHIND_MAX = 1024 * 1024
MAX_TOO_BIG = 1024

#: Names of files deleted while open, until their last close (_set_aside).
_ASIDE = re.compile(r"\.quicfs-[0-9a-f]{16}")


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, share: Share, opts: Options) -> None:
        super().__init__()
        self.share = share
        self.opts = opts
        #: With metadata the kernel checks POSIX ACLs too (FUSE_POSIX_ACL); they are kept
        #: in EAs, and the mode kept in step with them here (posixacl.py).
        self.enable_acl = opts.metadata
        #: The share's directory mounted (//host/share/PATH): inode 1's path.
        self.root = share.url.path
        self.inodes = InodeTable(self.root)
        #: Directories whose every name we know for now: their LOOKUPs need no round trip.
        self.known = KnownNames(opts.actimeo, share.dir_leases.alive)
        #: Directories one snapshot's page did not hold (or whose listing failed), and
        #: when.
        self._too_big: dict[str, float] = {}
        self.files: dict[int, Open] = {}
        self.writers: dict[int, WriteBehind] = {}
        self.readers: dict[int, ReadAhead] = {}
        self.handles_of: dict[int, set[int]] = {}  # inode -> open fhs
        #: inode -> releases under way: close(2) returns before the kernel's RELEASE is
        #: done (FUSE sends it asynchronously), and until it has parked or closed its
        #: handle, that handle is neither open nor parked here, yet open on the server.
        self._releasing: dict[int, list[trio.Event]] = {}
        self.fh_inode: dict[int, int] = {}
        #: fh -> the process that opened it (reads and writes name no caller).
        self.opener: dict[int, int] = {}
        self._writable: set[int] = set()  # fhs opened for writing
        #: fhs opened O_DIRECT that wrote: the kernel does not drop its pages after an
        #: asynchronous direct write (only before it), so a buffered read racing the
        #: write may have cached the old bytes (xfstests generic/451).
        self._direct: set[int] = set()
        self._direct_wrote: set[int] = set()
        self.cache = PageCache(share.leases, hold=opts.closetimeo, drain=self._drain_inode,
                               drop_pages=self._drop_pages)
        self._nursery: trio.Nursery | None = None
        if share.uplink is not None:
            share.uplink.on_reconnect.append(self.cache.connection_replaced)
        self.dirs: dict[int, Listing] = {}
        #: fhs whose close(2) did not wait for their data (closeflush=behind).
        self._behind: dict[int, trio.Event] = {}
        #: What such a file's release met: told at its next fsync or close.
        self._unsaved: dict[int, Exception] = {}
        #: When a file was last written through this mount and the server has not been
        #: told yet (ns): SMB servers move a file's write time when they please (Samba:
        #: at close), POSIX at every write.
        self._written_at: dict[int, int] = {}
        #: inode -> times set explicitly (atime, mtime; None: not set) while a handle of
        #: ours writes it, to go through that handle at its flush (Operations.setattr).
        self._times_due: dict[int, tuple[int | None, int | None]] = {}
        #: inode -> its Linux owner and mode as last read from its EAs (or set by us), and
        #: when (mount option metadata): a stat through an open handle or a listing may
        #: use it for actimeo; lookups read it afresh. (By age: ChangeTime cannot tell
        #: that EAs changed, Samba reports a file's mtime as its ChangeTime.)
        self._lx: dict[int, tuple[LxMeta, float]] = {}
        #: Attributes of files open here, from the server and then moved by our own
        #: writes; answered without a round trip while the lease's Read caching holds
        #: (cifs.ko trusts cached attributes under a read lease the same way). Anything
        #: else this mount changes about a file drops its entry.
        self._held: dict[int, _Held] = {}
        #: When this mount last changed a file's metadata (ns). Samba reports a file's
        #: mtime as its change time (smbd's get_change_timespec), so a link, chmod,
        #: utimes or setxattr would leave ctime where it was; POSIX moves it.
        self._ctime: dict[int, int] = {}
        #: Directories' attributes as the server last gave them, and when (trio time):
        #: answered for actimeo, with the times our own changes inside give them. The
        #: kernel forgets a directory's attributes at every create or unlink in it and
        #: asks again at the next lookup there; this spares that round trip.
        self._dir_held: dict[int, tuple[FileStat, float]] = {}
        #: The directory each open directory handle is of.
        self.dir_inode: dict[int, int] = {}
        # Complete listings reused within actimeo, as long as nothing changed through
        # this mount (any change bumps the generation).
        self._listings: dict[str, Listing] = {}
        self._generation = 0
        #: Handlers under way that change the server (fuse_errors' _CHANGING).
        self.changing = 0
        self._next_fh = 1
        #: Names and attributes from the server pass here before the kernel sees them.
        self.screen = Screen()

    @property
    def nursery(self) -> trio.Nursery | None:
        """Where background writes, read-ahead and parked handles live: the mount's."""
        return self._nursery

    @nursery.setter
    def nursery(self, nursery: trio.Nursery | None) -> None:
        self._nursery = nursery
        self.cache.nursery = nursery

    def stats(self) -> dict[str, int]:
        leases = self.share.dir_leases
        return {"open_files": len(self.files), "lease_breaks": self.share.leases.breaks,
                "parked_handles": self.cache.parked_count,
                "directory_leases": leases.held, "directory_leases_taken": leases.taken,
                "directory_leases_broken": leases.broken}

    # ------------------------------------------------------------------ helpers
    def _fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _entry(self, inode: int, st: FileStat) -> pyfuse3.EntryAttributes:
        st = self.screen.attrs(st)  # every attribute the kernel gets passes here
        due = self._times_due.get(inode)
        if due is not None:
            st = dataclasses.replace(st, atime_ns=st.atime_ns if due[0] is None else due[0],
                                     mtime_ns=st.mtime_ns if due[1] is None else due[1])
        written = self._written_at.get(inode)
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
            lx = self._lx_known(inode, fresh=False)
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

    def _negative(self) -> pyfuse3.EntryAttributes:
        """A "no such name" answer the kernel keeps for ``actimeo`` like a positive entry
        (inode 0: a negative dentry): a program that probes the same missing names
        again and again (make, shells, create-after-lookup) asks the server once. Our own
        create, mkdir, rename and link replace it at once; another client's new file
        shows within actimeo, as its changes to an existing file do."""
        e = pyfuse3.EntryAttributes()
        e.st_ino = 0
        e.entry_timeout = self.opts.actimeo
        return e

    def _track(self, fh: int, inode: int, handle: Open, writable: bool) -> None:
        self.files[fh] = handle
        if writable:
            self._writable.add(fh)
            self._names_changed(inode)
        self.fh_inode[fh] = inode
        self.handles_of.setdefault(inode, set()).add(fh)
        if self.nursery is not None:
            self.writers[fh] = WriteBehind(handle, self.nursery)
            self.readers[fh] = ReadAhead(handle, self.nursery,
                                         pending=lambda: self._pending_writes(inode))

    def _writes(self, inode: int, ctx: Any) -> bool:
        """Whether the calling process holds ``inode`` open for writing here."""
        pid = getattr(ctx, "pid", None)
        return pid is not None and any(
            fh in self._writable and self.opener.get(fh) == pid
            for fh in self.handles_of.get(inode, ()))

    def _write_moves_mtime(self, inode: int) -> None:
        """A write or truncate after utimensat moves mtime again (POSIX): the time set
        explicitly that waits for close no longer holds."""
        due = self._times_due.get(inode)
        if due is not None and due[1] is not None:
            self._times_due[inode] = (due[0], None)

    def _invalidate_reads(self, inode: int) -> None:
        """A truncate through any handle (or a write that failed) makes read-ahead of
        the file stale."""
        for fh in self.handles_of.get(inode, ()):
            reader = self.readers.get(fh)
            if reader is not None:
                reader.invalidate()

    def _reads_see(self, inode: int, off: int, buf: bytes) -> None:
        """A write through any handle is laid over what every handle has read ahead."""
        for fh in self.handles_of.get(inode, ()):
            reader = self.readers.get(fh)
            if reader is not None:
                reader.wrote(off, buf)

    def _pending_writes(self, inode: int) -> list[tuple[int, bytes]] | None:
        """Writes to ``inode`` made here that the server has not answered yet, oldest
        first (readahead.Pending); None if two handles hold some (their order is not
        known)."""
        writers = [w for f in self.handles_of.get(inode, ())
                   if (w := self.writers.get(f)) is not None and w.pending]
        if len(writers) > 1:
            return None
        return [(a, bytes(d)) for w in writers for a, d in w.runs()]

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
        for inode in self._under(list(self._releasing), paths):
            for done in list(self._releasing.get(inode, ())):
                await done.wait()
        parked = self._under(self.cache.parked_inodes(), paths)
        if parked:  # most renames and deletes find none: no nursery for them
            async with trio.open_nursery() as nursery:
                for inode in parked:
                    nursery.start_soon(self.cache.close_parked, inode)

    def _held_stat(self, inode: int) -> FileStat | None:
        held = self._held.get(inode)
        if held is None or not self.cache.reading(inode):
            return None
        # Its times are the server's: _entry moves mtime and ctime by our writes.
        return dataclasses.replace(held.st, size=held.size, allocation_size=held.allocation)

    def _hold(self, inode: int, st: FileStat) -> None:
        if self.handles_of.get(inode) and self.cache.reading(inode):
            self._held[inode] = _Held(st, st.size, st.allocation_size)

    def _touched(self, inode: int | None) -> None:
        """This mount changes ``inode``'s metadata: its held attributes go, its ctime
        moves."""
        if inode is not None:
            self._held.pop(inode, None)
            self._dir_held.pop(inode, None)
            self._ctime[inode] = time.time_ns()
            self._names_changed(inode)

    def _names_changed(self, inode: int) -> None:
        """What listings said of ``inode`` is no longer to be trusted: it is written or
        changed here, or another client's change broke our lease."""
        for path in self.inodes.names(inode):
            self.known.changed(path)

    def _entries_changed(self, parent_inode: int) -> None:
        """A name in directory ``parent_inode`` was added or removed here: its mtime and
        ctime move (POSIX). Its held attributes stay: a directory shows 2 links whatever
        it holds (attrs.py), so a subdirectory made or removed changes nothing else."""
        self._written_at[parent_inode] = self._ctime[parent_inode] = time.time_ns()

    def _hold_dir(self, inode: int, st: FileStat, taken: float) -> None:
        """Directory attributes the server gave as of ``taken`` (trio time)."""
        if st.is_dir:
            self._dir_held[inode] = (st, taken)

    def _dir_attrs(self, inode: int, path: str, *, leased: bool = False) -> FileStat | None:
        """A directory's attributes as held: for actimeo (unless ``leased``), and past
        it while directory leases cover them (client/dirleases.py)."""
        held = self._dir_held.get(inode)
        if held is None:
            return None
        st, taken = held
        if (not leased and trio.current_time() - taken < self.opts.actimeo) \
                or self.share.dir_leases.covers(path, taken):
            return st
        return None

    async def _drop_pages(self, inode: int) -> None:
        """Our Read caching is gone: read-ahead, held attributes and the kernel's pages
        of ``inode`` go."""
        self._invalidate_reads(inode)
        self._held.pop(inode, None)
        self._names_changed(inode)
        try:
            # In a thread: the kernel may wait on a page lock held by a read that only
            # this loop can answer.
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, inode, False)
        except OSError as exc:
            # ENOENT: the kernel holds nothing of this inode, so nothing to drop.
            log.debug("invalidate inode %d: %s", inode, exc)

    async def _drain_inode(self, inode: int) -> None:
        """Before anything looks at a file's size or data, what we gathered goes out."""
        for fh in list(self.handles_of.get(inode, ())):
            done = self._behind.get(fh)
            if done is not None:
                await done.wait()  # its error is its own file's next close to tell
                continue
            writer = self.writers.get(fh)
            if writer is not None and writer.pending:
                await writer.drain()

    def _check_writable(self) -> None:
        if self.opts.ro:
            raise pyfuse3.FUSEError(errno.EROFS)
        self._changed()

    def _changed(self) -> None:
        self._generation += 1
        self._listings.clear()

    async def _stat(self, path: str) -> FileStat:
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

    def _no_lx(self, path: str, exc: QuicfsError) -> LxMeta:
        """The Linux metadata of a file whose EA list the server sent malformed: none
        (the mount's defaults), logged by kind."""
        self.screen.refused.note("an EA list that is malformed (the file shows the "
                                 "mount's defaults)", lambda: f"{path or '/'}: {exc}",
                                 time.monotonic())
        return LxMeta()

    async def _lx_of(self, path: str, eas: Awaitable[list[tuple[bytes, bytes]]]) -> LxMeta:
        """The Linux metadata ``eas`` (a query of ``path``'s EAs) hold; a malformed
        list costs the file its metadata only."""
        try:
            return lxmeta.decode(await eas)
        except MalformedError as exc:
            return self._no_lx(path, exc)

    def _lx_known(self, inode: int, *, fresh: bool) -> LxMeta | None:
        """What we know of ``inode``'s Linux metadata (``fresh``: read within actimeo)."""
        known = self._lx.get(inode)
        if known is None or (fresh and trio.current_time() - known[1] >= self.opts.actimeo):
            return None
        return known[0]

    async def _meta(self, inode: int) -> LxMeta:
        """``inode``'s Linux metadata, read within actimeo."""
        known = self._lx_known(inode, fresh=True)
        if known is None:
            fhs = self.handles_of.get(inode)
            if fhs:  # (which works once every name of it is gone, too)
                handle = self.files[next(iter(fhs))]
                known = await self._lx_of(handle.name, handle.get_eas())
            else:
                known = (await self._stat(self.inodes.path(inode))).lx or LxMeta()
            self._lx[inode] = (known, trio.current_time())
        return known

    async def _new_meta(self, parent_inode: int, mode: int, ctx: Any) -> LxMeta:
        """Owner, group, mode and ACLs of a file the caller creates: the caller's ids and
        mode less its umask, or cut down by the directory's default ACL, which a new
        directory inherits (posix_acl_create); in a set-group-ID directory, the
        directory's group (and a new directory is set-group-ID too), as Linux file
        systems do (inode_init_owner)."""
        gid = ctx.gid
        parent = await self._meta(parent_inode)
        default = _acl_entries(parent.default_acl)
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

    async def _creation_eas(self, parent_inode: int, mode: int, ctx: Any, /,
                            **fields: Any) -> list[tuple[bytes, bytes]]:
        """The EAs a new file is created with: none without mount option metadata, else
        ``_new_meta``'s (``fields`` replace some of it)."""
        if not self.opts.metadata:
            return []
        meta = await self._new_meta(parent_inode, mode, ctx)
        return lxmeta.encode(dataclasses.replace(meta, **fields))

    async def _link_target(self, path: str, st: FileStat) -> bytes | None:
        """The target if ``path`` is a symbolic link: an mfsymlink file (only 1067-byte
        files are read) or a reparse point."""
        if not _may_be_link(st):
            return None
        return await self._read_link(path)

    async def _read_link(self, path: str) -> bytes | None:
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

    async def _remember(self, path: str, st: FileStat) -> int:
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

    async def _entry_for(self, inode: int, path: str, st: FileStat
                         ) -> pyfuse3.EntryAttributes:
        entry = self._entry(inode, st)
        target = await self._link_target(path, st)
        if target is not None:
            entry.st_mode = stat.S_IFLNK | 0o777
            entry.st_size = len(target)
        return entry

    # ------------------------------------------------------------------ metadata
    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None
                     ) -> pyfuse3.EntryAttributes:
        parent = self.inodes.path(parent_inode)
        text = os.fsdecode(name)
        if text == ".":
            path = parent
        elif text == "..":
            path = parent.rpartition("/")[0] if parent != self.root else parent
        else:
            path = join(parent, text)
        known = self.inodes.inode_of(path)
        if text not in (".", ".."):
            now = trio.current_time()
            if not self.known.holds(parent, now) or self._listed_aged(parent, text, path, now):
                await self._snapshot(parent_inode, parent)
            # Answers from a listing last no longer than it: another client's change
            # shows within actimeo of the listing.
            left = self.known.left(parent, now)
            if self.known.absent(parent, text, now):
                if known is None:
                    negative = self._negative()
                    negative.entry_timeout = self.known.names_left(parent, now)
                    return negative
            else:
                listed = self.known.entry(parent, text, now)
                if listed is not None and self._listed_current(known, listed):
                    taken = self.known.since(parent)
                    inode = await self._remember(path, listed)
                    self._hold_dir(inode, listed, taken)
                    entry = await self._entry_for(inode, path, listed)
                    entry.entry_timeout = entry.attr_timeout = left
                    return entry
                covered = None if known is None else \
                    self._dir_attrs(known, path, leased=True)
                if covered is not None:
                    # A directory the kernel looks up again as it walks a path: its
                    # leases and its parent's say nothing changed.
                    inode = await self._remember(path, covered)  # the kernel's count
                    entry = self._entry(inode, covered)
                    entry.entry_timeout = entry.attr_timeout = self.opts.actimeo
                    return entry
        if known is not None:
            await self._drain_inode(known)  # the size we report includes what we gathered
        asked = trio.current_time()
        try:
            st = await self._stat(path)
        except SMBError as exc:
            if exc.status in (Status.OBJECT_NAME_NOT_FOUND, Status.OBJECT_PATH_NOT_FOUND,
                              Status.NO_SUCH_FILE, Status.DELETE_PENDING):
                if known is not None:
                    self._dir_held.pop(known, None)
                    self.inodes.removed(path)  # gone or renamed by another client
                    self.known.forget(path)
                return self._negative()
            raise
        inode = ROOT_INODE if path == self.root else await self._remember(path, st)
        self._hold_dir(inode, st, asked)
        return await self._entry_for(inode, path, st)

    async def _snapshot(self, inode: int, path: str) -> None:
        """List directory ``path`` whole instead of asking for one name in it, if one
        page holds it: the same round trip (CREATE + QUERY_DIRECTORY x 2 + CLOSE), and
        for actimeo the LOOKUPs of its other names need none (fs/known.py). A directory
        too big for that is asked name by name, and tried again after a while."""
        started = trio.current_time()
        tried = self._too_big.get(path)
        if tried is not None and started - tried < SNAPSHOT_RETRY:
            return
        generation = self._generation
        held = self.share.dir_leases.current(path)
        try:
            if held is not None:
                # Under a lease already: listed again through its handle.
                entries = await self.share.relist(held, SNAPSHOT_PAGE)
                whole = None if entries is None else Whole(None, entries, held)
            else:
                # A directory in use for longer than one actimeo is worth a lease.
                whole = await self.share.list_whole(path, SNAPSHOT_PAGE,
                                                    lease=self.known.outlived(path))
        except (SMBError, ProtocolError) as exc:
            # Of the listing only (it may be refused where a name is not): the name is
            # asked, and for a while no listing again. A lost connection or an
            # interrupted wait is the lookup's to raise.
            log.debug("listing %s for a lookup: %s", path or "/", exc)
            whole = None
        if whole is None:
            if held is not None:
                self.share.dir_leases.let_go(held)
            self._too_big[path] = started
            while len(self._too_big) > MAX_TOO_BIG:
                del self._too_big[next(iter(self._too_big))]
            return
        if generation != self._generation or self.changing:
            # This mount changed something meanwhile: the listing may predate it.
            if whole.held is not None and whole.held is not held:
                self.share.dir_leases.let_go(whole.held)
            return
        # (Not kept for opendir: sizes there must include writes gathered here.)
        self.known.listed(path, [(st.name, st) for st in self.screen.names(path, whole.entries)],
                          started, whole.held)
        if whole.here is not None and not self.opts.metadata:
            # (A CREATE response tells no size of EAs to read: not with metadata.) With
            # a lease, granted by the same CREATE that brought these attributes.
            self._hold_dir(inode, whole.here,
                           started if whole.held is None else whole.held.since)

    def _listed_aged(self, parent: str, name: str, path: str, now: float) -> bool:
        """Whether a leased listing still tells ``name`` is there but no longer its
        attributes (older than actimeo): listed again, not asked alone, it answers the
        names after it too, in the same round trip."""
        if self.known.left(parent, now) > 0 or not self.known.aged(parent, name, now):
            return False
        known = self.inodes.inode_of(path)
        return known is None or self._dir_attrs(known, path, leased=True) is None

    def _listed_current(self, inode: int | None, st: FileStat) -> bool:
        """Whether a listing's attributes of a file are what a stat would say: nothing
        of it is open or gathered here (fs/known.py drops what this mount changes), and
        with mount option metadata its owner and mode are known."""
        if inode is None:
            # Another name of a file known here (a hard link, another spelling) may be
            # of one this mount has changed since: asked.
            return not self.inodes.known(st.file_id) and not self._lx_wanted(st, 0)
        return not self.handles_of.get(inode) and inode not in self._releasing \
            and inode not in self._written_at and not self._lx_wanted(st, inode)

    @fuse_errors
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        held = self._held_stat(inode)
        if held is not None:
            # Includes what is gathered here: no need to send it first.
            return self._entry(inode, held)
        await self._drain_inode(inode)
        fhs = self.handles_of.get(inode)
        if fhs:
            # An open file is asked through its handle: that works even once every name
            # is gone (fstat after unlink), and costs one message instead of three.
            handle = self.files[next(iter(fhs))]
            info = FileAllInformation.unpack(await handle.query_info(FileInfoClass.ALL))
            st = FileStat.from_info(handle.name.rpartition("/")[2], info,
                                    file_id=info.index_number, nlink=info.number_of_links)
            if self.opts.metadata and st.ea_size \
                    and self._lx_known(inode, fresh=True) is None:
                st = dataclasses.replace(st, lx=await self._lx_of(handle.name,
                                                                  handle.get_eas()))
            self._hold(inode, st)
            return self._entry(inode, st)
        if self.inodes.names(inode) == [] and inode != ROOT_INODE:
            for fh, of in self.dir_inode.items():
                if of == inode:
                    # An open directory that was removed (or replaced by a rename):
                    # fstat() on it still answers, with no links left.
                    e = self._entry(inode, self.dirs[fh].entries[0][1])
                    e.st_nlink = 0
                    return e
        path = self.inodes.path(inode)
        held_dir = self._dir_attrs(inode, path)
        if held_dir is not None:
            return self._entry(inode, held_dir)
        asked = trio.current_time()
        st = await self._stat(path)
        self._hold_dir(inode, st, asked)
        return await self._entry_for(inode, path, st)

    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None, ctx: Any
                      ) -> pyfuse3.EntryAttributes:
        path = self.inodes.path(inode)
        # An open file's attributes as held under its lease (sizes moved by our writes):
        # a chown without metadata (owners are not SMB's to keep) needs no round trip.
        held = self._held_stat(inode)
        self._touched(inode)
        times = fields.update_atime or fields.update_mtime
        # Times set by the process that writes the file (tar's futimens: the kernel
        # names no handle for it) may wait for its close; set by another (touch -d),
        # that process would hear of their failure never.
        if held is None or fields.update_size or fields.update_mode or (
                times and not self._writes(inode, ctx)) or (
                self.opts.metadata and (fields.update_uid or fields.update_gid)):
            held = None
            await self._drain_inode(inode)
        writable = False
        # The attributes after, when the last change made brought them back.
        st: FileStat | None = None
        if fields.update_size:
            held = None
            self._write_moves_mtime(inode)
            self._invalidate_reads(inode)
            self._check_writable()
            handle = self.files.get(fh) if fh is not None else None
            if handle is not None:
                await handle.set_end_of_file(attr.st_size)
            else:
                await self.share.truncate(path, attr.st_size)
        if times and held is not None:
            # A file we write (tar's futimens): the times go through our handle with its
            # last writes, at flush. Set on that handle they stay whatever it writes
            # before (MS-FSA 2.1.5.14.2): one round trip at close(2) where sending them
            # now would cost two (the writes gathered first, then the times).
            self._check_writable()
            if fields.update_mtime:
                self._written_at.pop(inode, None)  # an explicit time wins
            atime, mtime = self._times_due.get(inode, (None, None))
            self._times_due[inode] = (attr.st_atime_ns if fields.update_atime else atime,
                                      attr.st_mtime_ns if fields.update_mtime else mtime)
        elif times:
            self._check_writable()
            if fields.update_mtime:
                self._written_at.pop(inode, None)  # an explicit time wins
            # With mount option metadata a stat reads the EAs too (_stat): asked apart.
            st = await self.share.set_times(
                path,
                atime_ns=attr.st_atime_ns if fields.update_atime else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
                stat_after=not self.opts.metadata,
            )
        if self.opts.metadata and (fields.update_mode or fields.update_uid
                                   or fields.update_gid):
            self._check_writable()
            held = None
            meta = LxMeta(uid=attr.st_uid if fields.update_uid else None,
                          gid=attr.st_gid if fields.update_gid else None,
                          mode=attr.st_mode if fields.update_mode else None)
            access = _acl_entries((await self._meta(inode)).acl) if fields.update_mode \
                else None
            if access:
                # chmod moves the ACL's owner, mask and other entries (posix_acl_chmod).
                meta = dataclasses.replace(meta, acl=posixacl.encode(
                    posixacl.chmod(access, attr.st_mode)))
            await self.share.set_eas(path, lxmeta.encode(meta))
            st = None
            self._lx.pop(inode, None)
            # Write bits given back: a read-only attribute (set by another client; this
            # mount keeps modes in $LXMOD) would still refuse writes.
            writable = fields.update_mode and bool(attr.st_mode & 0o222)
        elif fields.update_mode:
            # Of a mode, SMB keeps one bit: no write permission for anyone is the
            # read-only attribute (MS-FSCC 2.6), as cifs.ko maps it.
            # Asked afresh: another client's change of the DOS attributes breaks no
            # Read lease, so the held ones may be out of date.
            self._check_writable()
            st = st or await self._stat(path)
            if not st.is_dir:
                st = await self._set_readonly(path, st, not attr.st_mode & 0o222)
        # Without metadata, owner and group are not SMB's to keep (uid=/gid= set them).
        if st is None:
            st = held or await self._stat(path)
        if writable and not st.is_dir and st.attributes & FileAttributes.READONLY:
            st = await self._set_readonly(path, st, False) or await self._stat(path)
        # Held while the file is open (ftruncate, fchmod): the getattr and the reads that
        # follow need not ask again (one compound, EAs in it, where a stat through the
        # handle would take two with mount option metadata).
        self._hold(inode, st)
        return await self._entry_for(inode, path, st)

    async def _set_readonly(self, path: str, st: FileStat, readonly: bool
                            ) -> FileStat | None:
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

    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.inodes.forget(inode, count)
            if not self.inodes.known(inode):
                self.cache.forget(inode)
                self._ctime.pop(inode, None)
                self._lx.pop(inode, None)
                self._dir_held.pop(inode, None)
                self._unsaved.pop(inode, None)
                if not self.handles_of.get(inode):
                    self._written_at.pop(inode, None)
                    self._times_due.pop(inode, None)

    # ------------------------------------------------------------------ xattrs
    # The "user." namespace is the file's SMB extended attributes (MS-FSCC 2.4.15), as
    # cifs.ko maps it. With mount option metadata, "trusted." and the POSIX ACLs are kept
    # in EAs too, under names of ours (smb2/lxmeta.py); other namespaces are not SMB's to
    # keep. SMB compares EA names without regard to case, and an empty value means
    # "remove": one cannot be stored.
    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        if self.opts.metadata and name in ACL_XATTRS:
            # Asked for by the kernel's permission checks too: from what the last lookup
            # read when it can be.
            meta = await self._meta(inode)
            value = meta.acl if name == posixacl.ACCESS else meta.default_acl
        else:
            key = self._ea_key(name, errno.ENODATA, errno.ENODATA)
            value = _find_ea(await self.share.get_eas(self.inodes.path(inode)), key)
        if not value:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    @fuse_errors
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        path = self.inodes.path(inode)
        eas = self.screen.eas(path, await self.share.get_eas(path))
        names = [USER_XATTR + stored for stored, _ in eas if not lxmeta.reserved(stored)]
        if self.opts.metadata:
            meta = lxmeta.decode(eas)
            names += [name for name, value in zip(ACL_XATTRS, (meta.acl, meta.default_acl),
                                                  strict=True) if value]
            if ctx.uid == 0:  # trusted.* is listed to CAP_SYS_ADMIN only
                names += [TRUSTED_XATTR + kept for stored, _ in eas
                          if (kept := lxmeta.trusted_name(stored)) is not None]
        return names

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        self._check_writable()
        if self.opts.metadata and name in ACL_XATTRS:
            await self._set_acl(inode, name, value, ctx)
            return
        key = self._ea_key(name, errno.EOPNOTSUPP, errno.EPERM)
        if not value:
            raise pyfuse3.FUSEError(errno.EINVAL)  # SMB would take it as a removal
        if len(value) > MAX_EA_VALUE:
            raise pyfuse3.FUSEError(errno.E2BIG)
        self._touched(inode)
        await self.share.set_ea(self.inodes.path(inode), key, value)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        self._check_writable()
        if self.opts.metadata and name in ACL_XATTRS:
            await self._set_acl(inode, name, None, ctx)
            return
        key = self._ea_key(name, errno.ENODATA, errno.ENODATA)
        path = self.inodes.path(inode)
        # Removing a missing EA succeeds in SMB; removexattr(2) says ENODATA.
        if _find_ea(await self.share.get_eas(path), key) is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        self._touched(inode)
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
        self._touched(inode)
        st = await self._stat(path)
        meta = st.lx or LxMeta()
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
            shown = posix_attrs(st, self.opts, meta)
            mode = (shown.mode & ~0o777) | perms
            if mode & stat.S_ISGID and not in_group_or_root(ctx, shown.gid):
                # The kernel leaves this to us without FUSE_SETXATTR_EXT (pyfuse3).
                mode &= ~stat.S_ISGID
            change = LxMeta(mode=mode, acl=b"" if equivalent else value)
        await self.share.set_eas(path, lxmeta.encode(change))
        # What the server now keeps (b"": removed).
        kept = {field: value or None for field in ("mode", "acl", "default_acl")
                if (value := getattr(change, field)) is not None}
        self._lx[inode] = (dataclasses.replace(meta, **kept), trio.current_time())
        if change.mode is not None and change.mode & 0o222 and not st.is_dir \
                and st.attributes & FileAttributes.READONLY:
            await self._set_readonly(path, st, False)

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

    # ------------------------------------------------------------------ directories
    @fuse_errors
    async def opendir(self, inode: int, ctx: Any) -> int:
        path = self.inodes.path(inode)
        # readdirplus hands the kernel each entry's attributes: sizes must include the
        # writes still gathered here, or the kernel would shrink its idea of a file.
        await self._sent_behind(None)
        for writer in list(self.writers.values()):
            if writer.pending:
                await writer.drain()
        now = trio.current_time()
        cached = self._listings.get(path)
        if cached is not None and cached.generation == self._generation \
                and now - cached.started < self.opts.actimeo:
            listing = Listing(path, cached.entries, None, started=cached.started,
                              generation=cached.generation)
        else:
            listing = await self._new_listing(path)
        fh = self._fh()
        self.dirs[fh] = listing
        self.dir_inode[fh] = inode
        return fh

    async def _new_listing(self, path: str) -> Listing:
        handle, answered = await self.share.open_listing(path)
        # The directory's own attributes come with its CREATE response.
        here = FileStat.from_info("", handle.created, file_id=0)
        # "." and ".." first, as readdir(3) users expect; the kernel takes no lookup
        # reference for them.
        return Listing(path, [(".", here), ("..", here)],
                       DirectoryReader(handle, answered=answered),
                       started=trio.current_time(), generation=self._generation,
                       screen=self.screen, nursery=self.nursery)

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self.dirs[fh]
        if start_id == 0 and listing.generation != self._generation:
            # From the start again (rewinddir, or the first read after opendir) with
            # names made or removed through this mount since the listing was taken:
            # listed afresh (xfstests generic/471).
            fresh = await self._new_listing(listing.path)
            self.dirs[fh] = fresh
            await listing.close()
            listing = fresh
        here = listing.path
        i = start_id
        while await listing.fill(i):
            name, st = listing.entries[i]
            i += 1
            if _ASIDE.fullmatch(name):
                continue  # deleted while open (_set_aside): POSIX shows it nowhere
            if name in (".", ".."):
                target = here if name == "." else here.rpartition("/")[0]
                inode = self.inodes.inode_of(target) or ROOT_INODE
                if not pyfuse3.readdir_reply(token, name.encode(), self._entry(inode, st), i):
                    return
                continue
            path = join(here, name)
            if self._lx_wanted(st, self.inodes.peek(path, st.file_id, link_view(st))):
                await self._fetch_lx(listing, i - 1)
                st = listing.entries[i - 1][1]
            # An entry handed over counts as a lookup for the kernel (readdirplus); one
            # that does not fit is none.
            inode = await self._remember(path, st)
            attrs = self._entry(inode, st)
            if _may_be_link(st):
                attrs = await self._entry_for(inode, path, st)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, i):
                self.forget([(inode, 1)])
                return
        # Read to the end with nothing changed through the mount meanwhile: reusable for
        # the rest of actimeo, and its names tell which others are absent.
        if listing.generation == self._generation:
            self._listings[here] = listing
            self.known.listed(here, listing.entries[2:], listing.started)

    def _lx_wanted(self, st: FileStat, inode: int) -> bool:
        """Whether a listed entry's owner and mode must be read from its EAs (a listing
        does not carry them): programs that list mostly stat what they list (ls -l,
        rm -r, du, cp -r), and a window of files read at once costs far less than a
        getattr each later."""
        return self.opts.metadata and bool(st.ea_size) and st.lx is None \
            and (not inode or self._lx_known(inode, fresh=True) is None)

    async def _fetch_lx(self, listing: Listing, first: int) -> None:
        """Read the EAs of the entries from ``first`` on (a window of them) that need
        it, all at once: one round trip's wait for many files."""
        window = range(first, min(first + LX_WINDOW, len(listing.entries)))
        todo = [j for j in window
                if not _ASIDE.fullmatch(name := listing.entries[j][0])
                and name not in (".", "..")
                and self._lx_wanted(listing.entries[j][1], self.inodes.peek(
                    join(listing.path, name), listing.entries[j][1].file_id,
                    link_view(listing.entries[j][1])))]

        async def fetch(j: int) -> None:
            name, st = listing.entries[j]
            try:
                path = join(listing.path, name)
                lx = await self._lx_of(path, self.share.get_eas(path))
                listing.entries[j] = (name, dataclasses.replace(st, lx=lx))
            except SMBError as exc:  # gone meanwhile: listed as it was
                log.debug("EAs of listed %s: %s", name, exc)

        async with trio.open_nursery() as nursery:
            for j in todo:
                nursery.start_soon(fetch, j)

    async def releasedir(self, fh: int) -> None:
        listing = self.dirs.pop(fh, None)
        self.dir_inode.pop(fh, None)
        if listing is not None:
            await listing.close()

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        eas = await self._creation_eas(parent_inode, stat.S_IFDIR | mode, ctx)
        st = await self.share.mkdir(path, eas=eas)
        self.known.listed(path, (), trio.current_time())  # what we just made is empty
        self._entries_changed(parent_inode)
        return self._entry(await self._remember(path, st), st)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
                    ) -> pyfuse3.EntryAttributes:
        """A regular file; with mount option metadata also a FIFO, socket or device
        node, kept as an empty file whose EAs say what it is (smb2/lxmeta.py). Without
        it, SMB has nothing to keep one in: EPERM, as cifs.ko answers; nor for a device
        node on a mount not told ``dev``, which would show it as a plain file."""
        self._check_writable()
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, *lxmeta.SPECIAL_TYPES) \
                or (kind != stat.S_IFREG and not self.opts.metadata) \
                or (kind in lxmeta.DEVICE_TYPES and not mountflags.trusts(self.opts.vfs)[1]):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        device = kind in (stat.S_IFCHR, stat.S_IFBLK)
        eas = await self._creation_eas(parent_inode, mode, ctx, rdev=rdev if device else None)
        st = await self.share.make_empty(path, eas)
        self._entries_changed(parent_inode)
        return self._entry(await self._remember(path, st), st)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self._check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        self._touched(self.inodes.inode_of(path))  # its number may soon be another's
        await self._close_parked_under(path)
        if self._open_here(path):
            await self._set_aside(path)
        else:
            await self.share.rmdir(path)
        self._entries_changed(parent_inode)
        self.inodes.removed(path)
        self.known.forget(path)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self._check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        inode = self.inodes.inode_of(path)
        if inode is not None and not self.handles_of.get(inode):
            # Nobody left to tell, and its number may soon be another file's.
            self._unsaved.pop(inode, None)
        self._touched(inode)
        await self._close_parked_under(path)
        if self._open_here(path):
            # POSIX frees the name at once; SMB's delete-on-close would keep it until
            # the last close (new opens of it refused as DELETE_PENDING).
            await self._set_aside(path)
        else:
            await self.share.remove(path)
        self._entries_changed(parent_inode)
        self.inodes.removed(path)
        self.known.forget(path)

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Any) -> None:
        self._check_writable()
        if flags & ~pyfuse3.RENAME_NOREPLACE:
            # RENAME_EXCHANGE and RENAME_WHITEOUT have no SMB counterpart: refused, never
            # done as a plain rename.
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = join(self.inodes.path(parent_inode_old), os.fsdecode(name_old))
        new = join(self.inodes.path(parent_inode_new), os.fsdecode(name_new))
        replace = not flags & pyfuse3.RENAME_NOREPLACE
        self._touched(self.inodes.inode_of(old))
        self._touched(self.inodes.inode_of(new))
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
            target = await self._stat(new)
            if not target.is_dir and not self._open_here(new):
                raise  # refused for another reason (permissions, another client's open)
            source = await self._stat(old)
            if source.is_dir != target.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR if source.is_dir
                                        else errno.EISDIR) from None
            await self._set_aside(new)
            await self.share.rename(old, new, replace=True)
        for parent in {parent_inode_old, parent_inode_new}:
            self._entries_changed(parent)
        self.inodes.renamed(old, new)
        self.known.forget(old)
        self.known.forget(new)  # a directory replaced: what was listed in it goes
        self.known.changed(new)

    def _open_here(self, path: str) -> bool:
        """Whether a program here holds ``path`` open (a file, or a directory)."""
        inode = self.inodes.inode_of(path)
        return inode is not None and (bool(self.handles_of.get(inode))
                                      or inode in self.dir_inode.values())

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

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any
                      ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        try:
            data = symlinks.encode(target)
        except ValueError:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG) from None
        # A link's own mode means nothing; its owner does (sticky directories).
        eas = await self._creation_eas(parent_inode, stat.S_IFLNK | 0o777, ctx, mode=None)
        st = await self.share.create_small(path, data, eas=eas)
        self._entries_changed(parent_inode)
        entry = self._entry(await self._remember(path, st), st)
        entry.st_mode = stat.S_IFLNK | 0o777
        entry.st_size = len(target)
        return entry

    @fuse_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        target = await self._read_link(self.inodes.path(inode))
        if target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return target

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any
                   ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        src = self.inodes.path(inode)
        dst = join(self.inodes.path(new_parent_inode), os.fsdecode(new_name))
        self._touched(inode)
        st = await self.share.link(src, dst)
        self._entries_changed(new_parent_inode)
        # Both names are one file: the kernel expects the same inode back, whatever id
        # the server gives the new name.
        self.inodes.linked(dst, inode, link_view(st))
        self.known.changed(dst)
        return await self._entry_for(inode, dst, st)

    # ------------------------------------------------------------------ files
    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        path = self.inodes.path(inode)
        await self._sent_behind(inode)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if writing:
            self._check_writable()
        # Held attributes are of the opens before: this one asks the server again.
        self._held.pop(inode, None)
        handle = self.cache.take_parked(inode, writable=writing)
        reused = handle is not None
        if handle is None:
            handle = await self._open_leased(inode, path, "r+" if writing else "r",
                                             head=0 if writing else HEAD)
        keep = self.cache.opened(inode, handle, reused=reused)
        fh = self._fh()
        self._track(fh, inode, handle, writing)
        self.opener[fh] = ctx.pid
        if writing and flags & os.O_DIRECT:
            self._direct.add(fh)
        if flags & os.O_TRUNC and writing:
            self._write_moves_mtime(inode)
            self._invalidate_reads(inode)  # other handles' read-ahead is of the old data
            await handle.set_end_of_file(0)
        # Close-to-open consistency (as cifs.ko): the kernel keeps its cached pages only
        # while a lease has promised, since they were read, that nobody changed the file.
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

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
                             meta: LxMeta | None) -> Open:
        """Open or create ``path`` as open(2) with O_CREAT (``how``: share.create_mode).
        With ``meta`` a new file gets its owner and mode in its CREATE (ExtA); but a
        server applies those to an existing file it overwrites too (Samba does), so that
        CREATE must find no file: one that exists is opened again without them."""
        if meta is None:
            return await self._open_leased(inode, path, how)
        try:
            return await self._open_leased(inode, path, "x", eas=lxmeta.encode(meta))
        except SMBError as exc:
            if how == "x" or exc.status != Status.OBJECT_NAME_COLLISION:
                raise
        return await self._open_leased(inode, path, how)

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._check_writable()
        path = join(self.inodes.path(parent_inode), os.fsdecode(name))
        how = create_mode(exclusive=bool(flags & os.O_EXCL), truncate=bool(flags & os.O_TRUNC))
        known = self.inodes.inode_of(path)
        meta = None
        if self.opts.metadata:
            meta = await self._new_meta(parent_inode, stat.S_IFREG | mode, ctx)
        handle = await self._create_leased(known, path, how, meta)
        if handle.created.create_action == CreateAction.CREATED:
            self._entries_changed(parent_inode)
        fh = self._fh()
        st = handle.created_stat()
        if st is None:
            st = await self._stat(path)
        elif meta is not None:
            st = dataclasses.replace(st, lx=meta)
        inode = await self._remember(path, st)
        if self.cache.key_of(inode) not in (None, handle.lease_key):
            # The server gave the new file a number an old one had (ext4 reuses them):
            # the inode's lease bookkeeping was the old file's.
            await self.cache.rekey(inode)
        self.cache.opened(inode, handle, reused=False)
        self._invalidate_reads(inode)  # other handles' read-ahead is of the old data
        self._track(fh, inode, handle, True)
        self.opener[fh] = ctx.pid
        if flags & os.O_DIRECT:
            self._direct.add(fh)
        self._held.pop(inode, None)
        self._hold(inode, st)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), self._entry(inode, st)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        inode = self.fh_inode[fh]
        held = self._held_stat(inode)
        if held is not None:
            # What was just written is read back from here while it is on its way.
            pending = [w for f in self.handles_of.get(inode, ())
                       if (w := self.writers.get(f)) is not None and w.pending]
            end = min(off + size, held.size)
            if pending and end <= off:
                return b""
            if len(pending) == 1:  # of two writers', which is newer is not known
                data = pending[0].peek(off, end)
                if data is not None:
                    return data
            if pending and not any(w.overlaps(off, end) for w in pending):
                # Nothing on its way touches these bytes: no need to wait for it. Past
                # the server's end of file and before our writes lies a hole: zeros.
                reader = self.readers.get(fh)
                data = await (reader.read(off, end - off) if reader is not None
                              else self.files[fh].read(off, end - off))
                return data.ljust(end - off, b"\0")
        await self._drain_inode(inode)
        reader = self.readers.get(fh)
        if reader is None:
            return await self.files[fh].read(off, size)
        return await reader.read(off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        inode = self.fh_inode[fh]
        if self._behind:
            # Another handle's data left behind goes first: two handles' WRITEs in
            # flight at once may land in either order.
            await self._sent_behind(inode, but=fh)
        self._changed()
        self._written_at[inode] = time.time_ns()
        self._write_moves_mtime(inode)
        if fh in self._direct:
            self._direct_wrote.add(fh)
            self.cache.distrust(inode)
        writer = self.writers.get(fh)
        self._reads_see(inode, off, buf)
        try:
            if writer is None:
                n = await self.files[fh].write(off, buf)
            else:
                n = await writer.write(off, buf)
        except BaseException:
            self._invalidate_reads(inode)  # what was laid over them is not on the server
            raise
        held = self._held.get(inode)
        if held is not None:
            held.wrote(off, n)
        return n

    @fuse_errors
    async def flush(self, fh: int) -> None:
        # close(2) reports what went wrong with gathered writes (close-to-open); the
        # server's attributes count again from here (its allocation, say).
        inode = self.fh_inode[fh]
        self._held.pop(inode, None)
        earlier = await self._left_behind(inode, fh)
        if earlier is None and self._flush_behind(fh):
            return
        await self._flush_now(fh)
        if earlier is not None:
            raise earlier

    async def _flush_now(self, fh: int) -> None:
        """Send what ``fh`` gathered and then the times its writes gave the file (in
        the compound of the last WRITE: close(2) costs one round trip, not two); raise
        what either met."""
        inode = self.fh_inode[fh]
        writer = self.writers.get(fh)
        try:
            if fh in self._writable:
                await self._stamp(inode, self.files[fh], fh, writer)
            elif writer is not None:
                await writer.drain()
        except Exception:
            self._invalidate_reads(inode)
            raise
        if fh in self._direct_wrote:
            # Direct writes are on the server now: pages a racing read cached go.
            self._direct_wrote.discard(fh)
            await self._drop_pages(inode)

    def _flush_behind(self, fh: int) -> bool:
        """closeflush=behind: a small file's close(2) returns at once, and what it
        would have waited for (its gathered data, the times its writes gave it) is sent
        from here in the background, while a Write lease keeps every other client from
        seeing the file before it arrives (their open breaks it: sent first). Here, an
        open, a write through another handle, a look at its size or data, and the
        unmount wait for it; what it meets is logged and raised by the file's next
        fsync or close (``_left_behind``)."""
        if self.opts.closeflush != "behind" or fh in self._direct or self._nursery is None:
            return False
        writer = self.writers.get(fh)
        if writer is None or writer.error is not None or writer.unsent > BEHIND_MAX:
            return False
        if not self.cache.state(self.fh_inode[fh]) & LeaseState.WRITE_CACHING:
            return False
        done = self._behind[fh] = trio.Event()
        self._nursery.start_soon(self._send_behind, fh, done)
        return True

    async def _send_behind(self, fh: int, done: trio.Event) -> None:
        try:
            await self._flush_now(fh)
        except Exception as exc:  # close(2) has returned: the next fsync or close tells
            inode = self.fh_inode.get(fh)
            if inode is not None:
                self._unsaved[inode] = exc
            self.writers.pop(fh, None)  # (its error is told once, not again at release)
            handle = self.files.get(fh)
            log.warning("%s: what was written before close(2) is lost: %s",
                        handle.name if handle is not None else f"inode {inode}", exc)
        finally:
            del self._behind[fh]
            done.set()

    async def _sent_behind(self, inode: int | None, *, but: int | None = None) -> None:
        """Wait until what close(2)s of ``inode`` (None: of every file) left behind is
        sent."""
        for fh, done in list(self._behind.items()):
            if fh != but and (inode is None or self.fh_inode.get(fh) == inode):
                await done.wait()

    async def _left_behind(self, inode: int, fh: int) -> Exception | None:
        """Before a flush or fsync of writable ``fh``: what other close(2)s of the file
        left behind is sent first, and what that met is returned (once), for the
        caller to raise after its own work."""
        await self._sent_behind(inode, but=fh)
        return self._unsaved.pop(inode, None) if fh in self._writable else None

    async def settle(self) -> None:
        """At unmount: what close(2)s left behind is sent before the mount's tasks end."""
        await self._sent_behind(None)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        inode = self.fh_inode[fh]
        self._held.pop(inode, None)
        earlier = await self._left_behind(inode, fh)
        writer = self.writers.get(fh)
        if writer is not None:
            try:
                await writer.drain()
            except BaseException:
                self._invalidate_reads(self.fh_inode[fh])
                raise
        await self._stamp_write_time(fh)
        await self.files[fh].flush()
        if earlier is not None:
            raise earlier

    async def _stamp_write_time(self, fh: int) -> None:
        """Tell the server the write time our writes gave the file. Set explicitly, it
        stays (MS-FSA 2.1.5.14.2): the server no longer moves it when the handle closes
        a second later, so a stat after close(2) shows what the next one will."""
        if fh not in self._writable:
            return  # a reader's handle may not set times; the writer's flush does
        await self._stamp(self.fh_inode[fh], self.files[fh], fh)

    async def _stamp(self, inode: int, handle: Open, fh: int | None = None,
                     writer: WriteBehind | None = None) -> None:
        """The times this mount gave the file, set through ``handle`` after what
        ``writer`` (its writes) still holds: a WRITE after them would move them again.
        Times set explicitly that fail raise (close(2) tells); our own write time only
        logs."""
        if inode in self._times_due:
            # Times set explicitly (utimensat). What other handles of ours gathered goes
            # first: a write through another SMB open after the times would move mtime
            # again (MS-FSA 2.1.5.14.2 binds them to this handle only).
            for other in list(self.handles_of.get(inode, ())):
                other_writer = self.writers.get(other)
                if other != fh and other_writer is not None and other_writer.pending:
                    try:
                        await other_writer.drain()
                    except Exception as exc:  # that handle's close(2) is to report it
                        other_writer.error = other_writer.error or exc
        written = self._written_at.pop(inode, None)
        due = self._times_due.get(inode)
        if due is None and written is None:
            if writer is not None:
                await writer.drain()
            return
        if due is not None:
            atime, mtime = due
            then = handle.times_request(atime_ns=atime,
                                        mtime_ns=written if mtime is None else mtime)
        else:
            then = handle.times_request(mtime_ns=written, ctime_ns=written)
        if writer is not None:
            failed = await writer.drain(then)
        else:
            failed = await handle.attempt(then)
        if due is None:
            if failed is not None:
                # Only the time is at stake, never data: close(2) must not fail for it.
                log.debug("%s: write time not set: %s", handle.name, failed)
            return
        if failed is not None:
            raise failed
        if self._times_due.get(inode) == due:
            del self._times_due[inode]

    @fuse_errors
    async def release(self, fh: int) -> None:
        inode = self.fh_inode.get(fh)
        if inode is None:
            await self._release(fh)
            return
        done = trio.Event()
        self._releasing.setdefault(inode, []).append(done)
        try:
            await self._release(fh)
        finally:
            waiting = self._releasing[inode]
            waiting.remove(done)
            if not waiting:
                del self._releasing[inode]
            done.set()

    async def _release(self, fh: int) -> None:
        done = self._behind.get(fh)
        if done is not None:
            await done.wait()  # the close(2) that left it returned long ago
        self.readers.pop(fh, None)
        writer = self.writers.pop(fh, None)
        handle = self.files.pop(fh, None)
        inode = self.fh_inode.pop(fh, None)
        self.opener.pop(fh, None)
        writable = fh in self._writable
        self._writable.discard(fh)
        self._direct.discard(fh)
        self._direct_wrote.discard(fh)
        if inode is not None:
            self.handles_of.get(inode, set()).discard(fh)
            if not self.handles_of.get(inode):
                self._held.pop(inode, None)
        try:
            if writer is not None:
                await writer.drain()
            if writable and inode is not None and handle is not None \
                    and (inode in self._written_at or inode in self._times_due):
                # Written back after the last flush (mmap): stamped on the way out.
                self._held.pop(inode, None)  # its times were ours until now
                try:
                    await self._stamp(inode, handle)
                except QuicfsError as exc:  # no close(2) is left to tell
                    log.warning("%s: times not set: %s", handle.name, exc)
        finally:
            if handle is not None:
                if inode is None or not self.inodes.names(inode):
                    # Nothing to reopen by a name that is gone: an unlinked file's
                    # handle closes at once, so its set-aside name goes with it.
                    await handle.close()
                else:
                    await self.cache.release(inode, handle, writable=writable)
            if writable and inode is not None:
                # Its size and times are the server's only now: a listing taken
                # while it was open may hold others.
                self._names_changed(inode)


@dataclass(slots=True)
class _Held:
    """Attributes of an open file as the server gave them, and its size and allocation
    as our writes since have made them (updated at every write: kept cheap)."""

    st: FileStat
    size: int
    allocation: int

    def wrote(self, off: int, n: int) -> None:
        end = off + n
        if end > self.size:  # the server allocates what a write adds, not holes before
            self.allocation += -(-min(n, end - self.size) // 4096) * 4096
            self.size = end


def fuse_opt_escape(value: str) -> str:
    """``value`` as libfuse's option parser reads it back (lib/fuse_opt.c,
    process_real_option_group): a backslash takes the next character as it is and ``\\ooo``
    is one byte. A comma in a mount's source then cannot end its fsname= and add options
    (``d,allow_other``), and bytes beyond ASCII pass pyfuse3, which sends options as ASCII."""
    out = []
    for byte in os.fsencode(value):
        if byte in b",\\":
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def fuse_options(opts: Options, fsname: str) -> set[str]:
    """libfuse's mount options; the generic flags it cannot take are left to
    ``mountflags.remount`` once the mount is live."""
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    options.add(f"fsname={fuse_opt_escape(fsname)}")
    if opts.subtype:
        # Type "fuse.quicfs": mount(8) then hands a remount to /sbin/mount.fuse.quicfs
        # (ours) instead of fuse3's generic mount.fuse, which cannot parse //host/share.
        options.add("subtype=quicfs")
    options.add("default_permissions")
    if opts.allow_other:
        options.add("allow_other")
    options.add("ro" if opts.ro else "rw")
    options |= mountflags.split(opts.vfs)[0]
    return options


__all__ = ["Operations", "fuse_options"]
