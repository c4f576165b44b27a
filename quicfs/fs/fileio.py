"""Reads, writes, flushes and closes of open files.

Writes are gathered per handle (writeback.py) and sent at flush, fsync or release, or
sooner when enough is gathered; reads may be answered from read-ahead (readahead.py) or
from writes still on their way, as the file's InodeIO (inodeio.py) decides. close(2)
reports what went wrong with gathered writes (close-to-open consistency); with mount
option closeflush=behind a small file's close does not wait for them. The times this
mount's writes gave a file go to the server after its last WRITE (MS-FSA 2.1.5.14.2: a
time set on a handle stays whatever it writes after).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from quicfs.client.open import FileStat, Open
from quicfs.errors import QuicfsError
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.handles import FileHandle, HandleTable
from quicfs.fs.inodes import InodeTable
from quicfs.fs.pagecache import PageCache
from quicfs.fs.writeback import WriteBehind
from quicfs.options import Options
from quicfs.smb2.constants import LeaseState

log = logging.getLogger("quicfs.fs")

#: With mount option closeflush=behind, close(2) of a file with at most this much
#: gathered (and under a Write lease) does not wait for it to reach the server.
BEHIND_MAX = 1024 * 1024


@dataclass(eq=False)
class FileIO:
    opts: Options
    inodes: InodeTable
    handles: HandleTable
    attrs: AttrCache
    cache: PageCache
    nursery: trio.Nursery
    #: How many close(2)s' data is being sent behind them (closeflush=behind).
    _behind: int = field(default=0, init=False)

    # ------------------------------------------------------------------ held attributes
    def held_stat(self, inode: int) -> FileStat | None:
        """An open file's attributes as held while its lease's Read caching holds,
        moved by our writes since."""
        held = self.handles.held(inode)
        if held is None or not self.cache.reading(inode):
            return None
        return held.stat()

    def hold(self, inode: int, st: FileStat) -> None:
        if self.cache.reading(inode):
            self.handles.hold(inode, st)

    # ------------------------------------------------------------------ data
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.handles[fh]
        inode = handle.inode
        io = self.handles.io(inode)
        # While the lease's Read caching holds, the size our writes made is the file's.
        held = io.held
        eof = held.size if held is not None and self.cache.reading(inode) else None
        return await io.read(handle, off, size, eof)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles[fh]
        inode = handle.inode
        # Another handle's data left behind goes first: two handles' WRITEs in flight at
        # once may land in either order.
        await self.sent_behind(inode, but=fh)
        self.attrs.changed()
        self.attrs.wrote(inode)
        if handle.direct:
            handle.direct_wrote = True
            self.cache.distrust(inode)
        return await self.handles.io(inode).write(handle, off, buf)

    # ------------------------------------------------------------------ flush and fsync
    async def flush(self, fh: int) -> None:
        # close(2) reports what went wrong with gathered writes (close-to-open); the
        # server's attributes count again from here (its allocation, say).
        handle = self.handles[fh]
        self.handles.unhold(handle.inode)
        earlier = await self._left_behind(handle)
        if earlier is None and self._flush_behind(handle):
            return
        await self._flush_now(handle)
        if earlier is not None:
            raise earlier

    async def fsync(self, fh: int) -> None:
        handle = self.handles[fh]
        self.handles.unhold(handle.inode)
        earlier = await self._left_behind(handle)
        if handle.writer is not None:
            try:
                await handle.writer.drain()
            except BaseException:
                self.handles.invalidate_reads(handle.inode)
                raise
        if handle.writable:
            # Set explicitly, the write time stays (MS-FSA 2.1.5.14.2): the server no
            # longer moves it when the handle closes a second later, so a stat after
            # close(2) shows what the next one will. (A reader's handle may not set
            # times; the writer's flush does.)
            await self._stamp(handle.inode, handle.open, handle.fh)
        await handle.open.flush()
        if earlier is not None:
            raise earlier

    async def _flush_now(self, handle: FileHandle) -> None:
        """Send what ``handle`` gathered and then the times its writes gave the file (in
        the compound of the last WRITE: close(2) costs one round trip, not two); raise
        what either met."""
        inode = handle.inode
        try:
            if handle.writable:
                await self._stamp(inode, handle.open, handle.fh, handle.writer)
            elif handle.writer is not None:
                await handle.writer.drain()
        except Exception:
            self.handles.invalidate_reads(inode)
            raise
        if handle.direct_wrote:
            # Direct writes are on the server now: pages a racing read cached go.
            handle.direct_wrote = False
            await self.attrs.drop(inode)

    # ------------------------------------------------------------------ closeflush=behind
    def _flush_behind(self, handle: FileHandle) -> bool:
        """closeflush=behind: a small file's close(2) returns at once, and what it
        would have waited for (its gathered data, the times its writes gave it) is sent
        from here in the background, while a Write lease keeps every other client from
        seeing the file before it arrives (their open breaks it: sent first). Here, an
        open, a write through another handle, a look at its size or data, and the
        unmount wait for it; what it meets is logged and raised by the file's next
        fsync or close (``_left_behind``)."""
        writer = handle.writer
        if self.opts.closeflush != "behind" or handle.direct or writer is None \
                or writer.error is not None or writer.unsent > BEHIND_MAX:
            return False
        if not self.cache.state(handle.inode) & LeaseState.WRITE_CACHING:
            return False
        handle.behind = trio.Event()
        self._behind += 1
        self.nursery.start_soon(self._send_behind, handle)
        return True

    async def _send_behind(self, handle: FileHandle) -> None:
        try:
            await self._flush_now(handle)
        except Exception as exc:  # close(2) has returned: the next fsync or close tells
            self.handles.unsaved[handle.inode] = exc
            handle.writer = None  # (its error is told once, not again at release)
            log.warning("%s: what was written before close(2) is lost: %s",
                        handle.open.name, exc)
        finally:
            assert handle.behind is not None
            handle.behind.set()
            handle.behind = None
            self._behind -= 1

    async def sent_behind(self, inode: int | None, *, but: int | None = None) -> None:
        """Wait until what close(2)s of ``inode`` (None: of every file) left behind is
        sent."""
        if not self._behind:
            return  # the common case: no scan of every open file on each open or write
        for done in self.handles.behind(inode, but=but):
            await done.wait()

    async def _left_behind(self, handle: FileHandle) -> Exception | None:
        """Before a flush or fsync of writable ``handle``: what other close(2)s of the
        file left behind is sent first, and what that met is returned (once), for the
        caller to raise after its own work."""
        await self.sent_behind(handle.inode, but=handle.fh)
        return self.handles.unsaved.pop(handle.inode, None) if handle.writable else None

    async def settle(self) -> None:
        """At unmount: what close(2)s left behind is sent before the mount's tasks end."""
        await self.sent_behind(None)

    # ------------------------------------------------------------------ times
    async def _stamp(self, inode: int, handle: Open, fh: int | None = None,
                     writer: WriteBehind | None = None) -> None:
        """The times this mount gave the file, set through ``handle`` after what
        ``writer`` (its writes) still holds: a WRITE after them would move them again.
        Times set explicitly that fail raise (close(2) tells); our own write time only
        logs."""
        if inode in self.attrs.times_due:
            # Times set explicitly (utimensat). What other handles of ours gathered goes
            # first: a write through another SMB open after the times would move mtime
            # again (MS-FSA 2.1.5.14.2 binds them to this handle only).
            for other in self.handles.of(inode):
                if other.fh != fh and other.pending:
                    assert other.writer is not None
                    try:
                        await other.writer.drain()
                    except Exception as exc:  # that handle's close(2) is to report it
                        other.writer.error = other.writer.error or exc
        written = self.attrs.written_at.pop(inode, None)
        due = self.attrs.times_due.get(inode)
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
        if self.attrs.times_due.get(inode) == due:
            del self.attrs.times_due[inode]

    # ------------------------------------------------------------------ release
    async def release(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if handle is None:
            return
        with self.handles.releasing(handle.inode):
            await self._release(handle)

    async def _release(self, handle: FileHandle) -> None:
        if handle.behind is not None:
            await handle.behind.wait()  # the close(2) that left it returned long ago
        inode = handle.inode
        self.handles.remove(handle.fh)
        try:
            if handle.writer is not None:
                await handle.writer.drain()
            if handle.writable and (inode in self.attrs.written_at
                                    or inode in self.attrs.times_due):
                # Written back after the last flush (mmap): stamped on the way out.
                self.handles.unhold(inode)  # its times were ours until now
                try:
                    await self._stamp(inode, handle.open)
                except QuicfsError as exc:  # no close(2) is left to tell
                    log.warning("%s: times not set: %s", handle.open.name, exc)
        finally:
            if not self.inodes.names(inode):
                # Nothing to reopen by a name that is gone: an unlinked file's handle
                # closes at once, so its set-aside name goes with it.
                await handle.open.close()
            else:
                await self.cache.release(inode, handle.open, writable=handle.writable)
            if handle.writable:
                # Its size and times are the server's only now: a listing taken while
                # it was open may hold others.
                self.attrs.names_changed(inode)
