"""opendir, readdir and releasedir: directories stream page by page as the kernel reads
them (listing.py), each entry handed over with its attributes (readdirplus)."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import pyfuse3
import trio

from quicfs.client.directory import DirectoryReader
from quicfs.client.open import FileStat
from quicfs.client.share import Share
from quicfs.errors import SMBError
from quicfs.fs.attrcache import AttrCache
from quicfs.fs.fileio import FileIO
from quicfs.fs.handles import HandleTable
from quicfs.fs.inodes import ROOT_INODE, InodeTable, join, link_view
from quicfs.fs.known import KnownNames
from quicfs.fs.listing import Listing
from quicfs.fs.meta import Meta, may_be_link
from quicfs.fs.namespace import ASIDE
from quicfs.fs.screen import Screen

log = logging.getLogger("quicfs.fs")

#: How many listed files a listing stats at once for their EAs (mount option metadata).
LX_WINDOW = 32


@dataclass(eq=False)
class Directories:
    share: Share
    inodes: InodeTable
    known: KnownNames
    screen: Screen
    attrs: AttrCache
    handles: HandleTable
    meta: Meta
    io: FileIO
    nursery: trio.Nursery

    async def opendir(self, inode: int) -> int:
        path = self.inodes.path(inode)
        # readdirplus hands the kernel each entry's attributes: sizes must include the
        # writes still gathered here, or the kernel would shrink its idea of a file.
        await self.io.sent_behind(None)
        for handle in self.handles.all():
            if handle.pending:
                assert handle.writer is not None
                await handle.writer.drain()
        cached = self.attrs.listing(path)
        if cached is not None:
            listing = Listing(path, cached.entries, None, started=cached.started,
                              generation=cached.generation)
        else:
            listing = await self._new_listing(path)
        return self.handles.add_dir(inode, listing)

    async def _new_listing(self, path: str) -> Listing:
        handle, answered = await self.share.open_listing(path)
        # The directory's own attributes come with its CREATE response.
        here = FileStat.from_info("", handle.created, file_id=0)
        # "." and ".." first, as readdir(3) users expect; the kernel takes no lookup
        # reference for them.
        return Listing(path, [(".", here), ("..", here)],
                       DirectoryReader(handle, answered=answered),
                       started=trio.current_time(), generation=self.attrs.generation,
                       screen=self.screen, nursery=self.nursery)

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        dir_handle = self.handles.dir(fh)
        listing = dir_handle.listing
        if start_id == 0 and listing.generation != self.attrs.generation:
            # From the start again (rewinddir, or the first read after opendir) with
            # names made or removed through this mount since the listing was taken:
            # listed afresh (xfstests generic/471).
            fresh = await self._new_listing(listing.path)
            dir_handle.listing = fresh
            await listing.close()
            listing = fresh
        here = listing.path
        i = start_id
        while await listing.fill(i):
            name, st = listing.entries[i]
            i += 1
            if ASIDE.fullmatch(name):
                continue  # deleted while open (_set_aside): POSIX shows it nowhere
            if name in (".", ".."):
                target = here if name == "." else here.rpartition("/")[0]
                inode = self.inodes.inode_of(target) or ROOT_INODE
                if not pyfuse3.readdir_reply(token, name.encode(),
                                             self.attrs.entry(inode, st), i):
                    return
                continue
            path = join(here, name)
            if self.meta.lx_wanted(st, self.inodes.peek(path, st.file_id, link_view(st))):
                await self._fetch_lx(listing, i - 1)
                st = listing.entries[i - 1][1]
            # An entry handed over counts as a lookup for the kernel (readdirplus); one
            # that does not fit is none.
            inode = await self.meta.remember(path, st)
            attrs = self.attrs.entry(inode, st)
            if may_be_link(st):
                attrs = await self.meta.entry_for(inode, path, st)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, i):
                self.meta.forget(inode, 1)
                return
        # Read to the end with nothing changed through the mount meanwhile: reusable for
        # the rest of actimeo, and its names tell which others are absent.
        if listing.generation == self.attrs.generation:
            self.attrs.keep_listing(listing)
            self.known.listed(here, listing.entries[2:], listing.started)

    async def _fetch_lx(self, listing: Listing, first: int) -> None:
        """Read the EAs of the entries from ``first`` on (a window of them) that need
        it, all at once: one round trip's wait for many files."""
        window = range(first, min(first + LX_WINDOW, len(listing.entries)))
        todo = [j for j in window
                if not ASIDE.fullmatch(name := listing.entries[j][0])
                and name not in (".", "..")
                and self.meta.lx_wanted(listing.entries[j][1], self.inodes.peek(
                    join(listing.path, name), listing.entries[j][1].file_id,
                    link_view(listing.entries[j][1])))]

        async def fetch(j: int) -> None:
            name, st = listing.entries[j]
            try:
                path = join(listing.path, name)
                lx = await self.meta.lx_of(path, self.share.get_eas(path))
                listing.entries[j] = (name, dataclasses.replace(st, lx=lx))
            except SMBError as exc:  # gone meanwhile: listed as it was
                log.debug("EAs of listed %s: %s", name, exc)

        async with trio.open_nursery() as nursery:
            for j in todo:
                nursery.start_soon(fetch, j)

    async def releasedir(self, fh: int) -> None:
        dir_handle = self.handles.remove_dir(fh)
        if dir_handle is not None:
            await dir_handle.listing.close()
