"""The handle table: what each of the kernel's file handles is, and what is open per inode.

One :class:`FileHandle` record per ``fh`` the kernel holds (its SMB Open, who opened it,
how, its write-behind and read-ahead); one :class:`~quicfs.fs.inodeio.InodeIO` per inode
with handles open here, holding them, the attributes held while they are open, and every
read and write through them (where reads meet writes on their way). Directory handles are
:class:`DirHandle` records. Removing a handle removes it from everything at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from quicfs.client.open import FileStat, Open
from quicfs.fs.inodeio import Held, InodeIO
from quicfs.fs.listing import Listing
from quicfs.fs.readahead import ReadAhead
from quicfs.fs.writeback import WriteBehind


@dataclass(eq=False, slots=True)
class FileHandle:
    """One open(2) of a file, as the kernel's ``fh`` names it."""

    fh: int
    inode: int
    open: Open
    #: The process that opened it: reads and writes name no caller (fs/edge.py).
    pid: int | None
    writable: bool
    #: Opened O_DIRECT (for writing).
    direct: bool
    reader: ReadAhead
    #: None once a background flush failed: its error is told once, not again at release.
    writer: WriteBehind | None
    #: It wrote O_DIRECT: the kernel does not drop its pages after an asynchronous direct
    #: write (only before it), so a buffered read racing the write may have cached the
    #: old bytes (xfstests generic/451).
    direct_wrote: bool = False
    #: Set while what its close(2) left behind is sent (closeflush=behind).
    behind: trio.Event | None = None

    @property
    def pending(self) -> bool:
        return self.writer is not None and self.writer.pending


@dataclass(eq=False, slots=True)
class DirHandle:
    """One opendir(3): the listing it reads, of directory ``inode``."""

    inode: int
    listing: Listing


class HandleTable:
    def __init__(self) -> None:
        self._files: dict[int, FileHandle] = {}
        self._inodes: dict[int, InodeIO] = {}
        self._dirs: dict[int, DirHandle] = {}
        #: inode -> releases under way: close(2) returns before the kernel's RELEASE is
        #: done (FUSE sends it asynchronously), and until it has parked or closed its
        #: handle, that handle is neither open nor parked here, yet open on the server.
        self._releasing: dict[int, list[trio.Event]] = {}
        #: inode -> what sending what a close(2) left behind met (closeflush=behind):
        #: told once, at the file's next fsync or close of a writable handle.
        self.unsaved: dict[int, Exception] = {}
        self._next_fh = 1

    def new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # ------------------------------------------------------------------ files
    def add(self, handle: FileHandle) -> None:
        self._files[handle.fh] = handle
        self._inodes.setdefault(handle.inode, InodeIO()).handles[handle.fh] = handle

    def __getitem__(self, fh: int) -> FileHandle:
        return self._files[fh]  # the kernel names only handles it was given

    def get(self, fh: int) -> FileHandle | None:
        return self._files.get(fh)

    def remove(self, fh: int) -> FileHandle | None:
        """Forget handle ``fh``; the last of its inode takes the held attributes along."""
        handle = self._files.pop(fh, None)
        if handle is not None:
            group = self._inodes[handle.inode]
            del group.handles[fh]
            if not group.handles:
                del self._inodes[handle.inode]
        return handle

    def __len__(self) -> int:
        return len(self._files)

    def all(self) -> list[FileHandle]:
        return list(self._files.values())

    def io(self, inode: int) -> InodeIO:
        """The reads and writes of ``inode``, which has handles open here."""
        return self._inodes[inode]

    def of(self, inode: int) -> list[FileHandle]:
        group = self._inodes.get(inode)
        return list(group.handles.values()) if group is not None else []

    def first(self, inode: int) -> FileHandle | None:
        group = self._inodes.get(inode)
        return next(iter(group.handles.values()), None) if group is not None else None

    def is_open(self, inode: int) -> bool:
        return inode in self._inodes

    def opener(self, fh: int) -> int | None:
        handle = self._files.get(fh)
        return handle.pid if handle is not None else None

    def writes(self, inode: int, pid: int | None) -> bool:
        """Whether process ``pid`` holds ``inode`` open for writing here."""
        return pid is not None and any(h.writable and h.pid == pid for h in self.of(inode))

    # ------------------------------------------------------------------ held attributes
    def held(self, inode: int) -> Held | None:
        group = self._inodes.get(inode)
        return group.held if group is not None else None

    def hold(self, inode: int, st: FileStat) -> None:
        group = self._inodes.get(inode)
        if group is not None:
            group.held = Held(st, st.size, st.allocation_size)

    def unhold(self, inode: int) -> None:
        group = self._inodes.get(inode)
        if group is not None:
            group.held = None

    # ------------------------------------------------------------------ reads and writes
    def invalidate_reads(self, inode: int) -> None:
        """A truncate through any handle (or a write that failed) makes read-ahead of
        the file stale."""
        group = self._inodes.get(inode)
        if group is not None:
            group.invalidate()

    async def drain(self, inode: int) -> None:
        """Before anything looks at a file's size or data, what we gathered goes out."""
        group = self._inodes.get(inode)
        if group is not None:
            await group.drain()

    def behind(self, inode: int | None = None, *, but: int | None = None
               ) -> list[trio.Event]:
        """What close(2)s of ``inode`` (None: of every file) left behind, being sent."""
        return [h.behind for h in self._files.values()
                if h.behind is not None and h.fh != but and (inode is None or h.inode == inode)]

    # ------------------------------------------------------------------ releases
    @contextmanager
    def releasing(self, inode: int) -> Iterator[None]:
        done = trio.Event()
        self._releasing.setdefault(inode, []).append(done)
        try:
            yield
        finally:
            waiting = self._releasing[inode]
            waiting.remove(done)
            if not waiting:
                del self._releasing[inode]
            done.set()

    def being_released(self) -> list[int]:
        return list(self._releasing)

    def is_releasing(self, inode: int) -> bool:
        return inode in self._releasing

    async def released(self, inode: int) -> None:
        """Wait for the releases of ``inode`` under way now."""
        for done in list(self._releasing.get(inode, ())):
            await done.wait()

    # ------------------------------------------------------------------ directories
    def add_dir(self, inode: int, listing: Listing) -> int:
        fh = self.new_fh()
        self._dirs[fh] = DirHandle(inode, listing)
        return fh

    def dir(self, fh: int) -> DirHandle:
        return self._dirs[fh]  # the kernel names only handles it was given

    def remove_dir(self, fh: int) -> DirHandle | None:
        return self._dirs.pop(fh, None)

    def dir_open(self, inode: int) -> bool:
        return any(d.inode == inode for d in self._dirs.values())

    def open_dir(self, inode: int) -> DirHandle | None:
        return next((d for d in self._dirs.values() if d.inode == inode), None)
