"""LOOKUP: a name in a directory to an inode and its attributes.

A lookup in a directory not listed within actimeo lists it whole if one page holds it: the
same round trip as asking for the one name, and for actimeo the lookups of its other names
(the ones that exist and the ones that do not) need none (fs/known.py). A directory in use
for longer is listed again under a directory lease, which keeps its names trusted until
another client changes them (client/dirleases.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import pyfuse3
import trio

from quicfs.client.open import FileStat
from quicfs.client.share import Share, Whole
from quicfs.errors import ProtocolError, SMBError
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import ROOT_INODE, InodeTable, join
from quicfs.fs.known import KnownNames
from quicfs.fs.meta import Meta
from quicfs.fs.screen import Screen
from quicfs.options import Options
from quicfs.smb2.status import Status

log = logging.getLogger("quicfs.fs")

#: A LOOKUP of a directory not listed within actimeo lists it whole if one page of this
#: many bytes holds it (~500 entries of 20-character names): Lookup._snapshot.
SNAPSHOT_PAGE = 64 * 1024
#: Seconds before a directory that page did not hold is tried again, and how many such
#: directories are remembered.
SNAPSHOT_RETRY = 30.0
MAX_TOO_BIG = 1024

_GONE = (Status.OBJECT_NAME_NOT_FOUND, Status.OBJECT_PATH_NOT_FOUND, Status.NO_SUCH_FILE,
         Status.DELETE_PENDING)


@dataclass(eq=False)
class Lookup:
    share: Share
    opts: Options
    inodes: InodeTable
    known: KnownNames
    screen: Screen
    attrs: AttrCache
    handles: HandleTable
    meta: Meta
    #: Directories one snapshot's page did not hold (or whose listing failed), and
    #: when.
    _too_big: dict[str, float] = field(default_factory=dict, init=False)

    @property
    def root(self) -> str:
        return self.share.url.path

    async def lookup(self, parent_inode: int, name: bytes) -> pyfuse3.EntryAttributes:
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
            entry = await self._listed(parent_inode, parent, text, path, known)
            if entry is not None:
                return entry
        if known is not None:
            await self.handles.drain(known)  # the size we report includes what we gathered
        asked = trio.current_time()
        try:
            st = await self.meta.stat(path)
        except SMBError as exc:
            if exc.status in _GONE:
                if known is not None:
                    self.attrs.unhold_dir(known)
                    self.inodes.removed(path)  # gone or renamed by another client
                    self.known.forget(path)
                return self.attrs.negative()
            raise
        inode = ROOT_INODE if path == self.root else await self.meta.remember(path, st)
        self.attrs.hold_dir(inode, st, asked)
        return await self.meta.entry_for(inode, path, st)

    async def _listed(self, parent_inode: int, parent: str, text: str, path: str,
                      known: int | None) -> pyfuse3.EntryAttributes | None:
        """The answer a listing of ``parent`` (taken now if it is due) or a directory
        lease gives for ``text`` in it; None if the server must be asked."""
        now = trio.current_time()
        if not self.known.holds(parent, now) or self._listed_aged(parent, text, path, now):
            await self._snapshot(parent_inode, parent)
        # Answers from a listing last no longer than it: another client's change shows
        # within actimeo of the listing.
        left = self.known.left(parent, now)
        if self.known.absent(parent, text, now):
            if known is not None:
                return None
            negative = self.attrs.negative()
            negative.entry_timeout = self.known.names_left(parent, now)
            return negative
        listed = self.known.entry(parent, text, now)
        if listed is not None and self._listed_current(known, listed):
            taken = self.known.since(parent)
            inode = await self.meta.remember(path, listed)
            self.attrs.hold_dir(inode, listed, taken)
            entry = await self.meta.entry_for(inode, path, listed)
            entry.entry_timeout = entry.attr_timeout = left
            return entry
        covered = None if known is None else self.attrs.dir_attrs(known, path, leased=True)
        if covered is not None:
            # A directory the kernel looks up again as it walks a path: its leases and
            # its parent's say nothing changed.
            inode = await self.meta.remember(path, covered)  # the kernel's count
            entry = self.attrs.entry(inode, covered)
            entry.entry_timeout = entry.attr_timeout = self.opts.actimeo
            return entry
        return None

    async def _snapshot(self, inode: int, path: str) -> None:
        """List directory ``path`` whole instead of asking for one name in it, if one
        page holds it: the same round trip (CREATE + QUERY_DIRECTORY x 2 + CLOSE), and
        for actimeo the LOOKUPs of its other names need none (fs/known.py). A directory
        too big for that is asked name by name, and tried again after a while."""
        started = trio.current_time()
        tried = self._too_big.get(path)
        if tried is not None and started - tried < SNAPSHOT_RETRY:
            return
        generation = self.attrs.generation
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
        if generation != self.attrs.generation or self.attrs.changing:
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
            self.attrs.hold_dir(inode, whole.here,
                                started if whole.held is None else whole.held.since)

    def _listed_aged(self, parent: str, name: str, path: str, now: float) -> bool:
        """Whether a leased listing still tells ``name`` is there but no longer its
        attributes (older than actimeo): listed again, not asked alone, it answers the
        names after it too, in the same round trip."""
        if self.known.left(parent, now) > 0 or not self.known.aged(parent, name, now):
            return False
        known = self.inodes.inode_of(path)
        return known is None or self.attrs.dir_attrs(known, path, leased=True) is None

    def _listed_current(self, inode: int | None, st: FileStat) -> bool:
        """Whether a listing's attributes of a file are what a stat would say: nothing
        of it is open or gathered here (fs/known.py drops what this mount changes), and
        with mount option metadata its owner and mode are known."""
        if inode is None:
            # Another name of a file known here (a hard link, another spelling) may be
            # of one this mount has changed since: asked.
            return not self.inodes.known(st.file_id) and not self.meta.lx_wanted(st, 0)
        return not self.handles.is_open(inode) and not self.handles.is_releasing(inode) \
            and inode not in self.attrs.written_at and not self.meta.lx_wanted(st, inode)
