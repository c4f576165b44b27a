"""What the kernel may keep of a file between opens: the page cache under a lease.

Without a lease, every open drops the kernel's cached pages (close-to-open consistency,
as cifs.ko without an oplock). With one, the server promises to tell us before anyone
else changes the file, so the pages stay for as long as the lease holds Read caching
without a break:

- every open of an inode asks for a lease under the inode's one key (MS-SMB2 3.2.4.3.8),
  so all its opens share one lease;
- an open keeps the cached pages only if Read caching was held *continuously* since they
  were cached: by an open still in use, or by a handle parked after close;
- closing the last handle parks it for ``hold`` seconds (cifs.ko's deferred close,
  `closetimeo`) when the lease has Handle caching, so `cat f; cat f` keeps the cache and
  skips a CREATE; a reopen in that time takes the parked handle back;
- a lease break (3.2.5.19.2) gives up exactly what it takes: Write caching → gathered
  writes go out first; Read caching → pages and read-ahead are dropped; Handle caching →
  parked handles are closed (the other client's open waits on that). Only then is the
  break acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from quicfs.client.leases import Leases, new_lease_key
from quicfs.client.open import Open
from quicfs.errors import QuicfsError
from quicfs.smb2.constants import LeaseState

log = logging.getLogger("quicfs.fs")

R, H, W = LeaseState.READ_CACHING, LeaseState.HANDLE_CACHING, LeaseState.WRITE_CACHING

#: cifs.ko's default `closetimeo`.
DEFAULT_HOLD = 1.0


@dataclass(eq=False)
class _Parked:
    handle: Open
    writable: bool
    timer: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: Taken back by an open, or closed: either way no longer the timer's to close.
    done: bool = False


@dataclass(eq=False)
class _Lease:
    key: bytes
    state: LeaseState = LeaseState.NONE
    #: The kernel's pages of this file agree with the server (Read caching held since).
    pages_valid: bool = False
    #: SMB opens under this key, in use or parked; at zero the server drops the lease.
    holders: int = 0
    parked: list[_Parked] = field(default_factory=list)


class PageCache:
    def __init__(
        self,
        leases: Leases,
        nursery: trio.Nursery,
        *,
        hold: float = DEFAULT_HOLD,
        drain: Callable[[int], Awaitable[None]],
        drop_pages: Callable[[int], Awaitable[None]],
    ) -> None:
        self.leases = leases
        self.hold = hold
        self._drain = drain
        self._drop_pages = drop_pages
        self._by_inode: dict[int, _Lease] = {}
        self._creating: dict[int, trio.Lock] = {}
        #: Where park timers run: the mount's.
        self.nursery = nursery

    # ------------------------------------------------------------------ keys
    def key(self, inode: int | None) -> bytes:
        """The lease key for opens of ``inode`` (a fresh one for a file not known yet)."""
        if inode is None:
            return new_lease_key()
        return self._lease(inode).key

    @asynccontextmanager
    async def creating(self, inode: int | None) -> AsyncIterator[bytes]:
        """The lease key for a CREATE of ``inode``, one CREATE at a time per inode.

        The key is tied to one file on the server (MS-SMB2 3.3.5.9.8), but a name may
        be another file by the time a CREATE arrives (renamed over meanwhile): two
        CREATEs under one key could each name a different file. Samba then refuses
        the second with STATUS_INVALID_PARAMETER (we take a new key and go again),
        except when that CREATE had waited for a lease break: 4.17 then never answers
        it at all, and the caller would wait for ever."""
        if inode is None:
            yield new_lease_key()
            return
        lock = self._creating.setdefault(inode, trio.Lock())
        async with lock:
            try:
                yield self.key(inode)
            finally:
                if not lock.statistics().tasks_waiting:
                    self._creating.pop(inode, None)

    def writing_lease(self, inode: int | None) -> tuple[bytes, LeaseState] | None:
        """(key, state) of ``inode``'s lease while an open of ours holds it with Write and
        Handle caching: a path-based open of the file (a stat) made under that key is
        then ours and breaks nothing (MS-SMB2 3.3.5.9.8), where under no key it would
        cost a lease break and its acknowledgement first. With Handle caching held, the
        name still names this file: another client's rename or delete breaks it first."""
        lease = self._by_inode.get(inode) if inode is not None else None
        if lease is None or lease.holders <= 0 or (lease.state & (W | H)) != W | H:
            return None
        return lease.key, lease.state

    def key_of(self, inode: int) -> bytes | None:
        lease = self._by_inode.get(inode)
        return lease.key if lease is not None else None

    def _lease(self, inode: int, key: bytes | None = None) -> _Lease:
        lease = self._by_inode.get(inode)
        if lease is None:
            lease = _Lease(key or new_lease_key())
            self._by_inode[inode] = lease
            self.leases.watch(lease.key, lambda state: self._broken(inode, state))
        return lease

    async def rekey(self, inode: int) -> None:
        """Forget ``inode``'s lease key. A server ties a key to one file (MS-SMB2
        3.3.5.9.8) and refuses it for another: the file behind the inode was replaced
        (while the connection was lost, or a new file got the old one's number). The
        handles parked under the old key are of the old file: they close. The record
        goes first: a handle parked under it while those close would be parked nowhere
        a rename or delete looks (its file kept open, a deleted name kept pending)."""
        lease = self._by_inode.pop(inode, None)
        if lease is not None:
            self.leases.unwatch(lease.key)
            await self._unpark(inode, lease)

    def state(self, inode: int) -> LeaseState:
        lease = self._by_inode.get(inode)
        return lease.state if lease is not None else LeaseState.NONE

    def reading(self, inode: int) -> bool:
        """Whether Read caching has held for ``inode`` since its current opens began: no
        other client has changed the file meanwhile (MS-SMB2 3.3.4.7 breaks it first)."""
        lease = self._by_inode.get(inode)
        return lease is not None and lease.pages_valid and bool(lease.state & R)

    def distrust(self, inode: int) -> None:
        """The kernel's pages of ``inode`` may be stale (a direct write): the next open
        drops them, whatever the lease."""
        lease = self._by_inode.get(inode)
        if lease is not None:
            lease.pages_valid = False

    # ------------------------------------------------------------------ opens
    def take_parked(self, inode: int, *, writable: bool) -> Open | None:
        """A parked handle of ``inode`` that can serve this open, taken out of parking."""
        lease = self._by_inode.get(inode)
        if lease is None:
            return None
        for parked in lease.parked:
            if parked.handle.stale:
                continue  # lost in a reconnect: it expires, and the open goes to the server
            if parked.writable or not writable:
                lease.parked.remove(parked)
                parked.done = True
                parked.timer.cancel()
                return parked.handle
        return None

    def opened(self, inode: int, handle: Open, *, reused: bool) -> bool:
        """Record an open of ``inode``; True if the kernel may keep its cached pages."""
        lease = self._lease(inode, handle.lease_key)
        if reused:
            return lease.pages_valid and bool(lease.state & R)
        if handle.lease_key != lease.key:
            # Not under this inode's lease: it promises nothing about the pages.
            lease.pages_valid = False
            return False
        granted = handle.lease_state
        keep = lease.pages_valid and lease.holders > 0 and bool(granted & R)
        lease.holders += 1
        lease.state = granted
        # From here on the kernel caches what this open reads; valid while R holds.
        lease.pages_valid = bool(granted & R)
        return keep

    async def release(self, inode: int, handle: Open, *, writable: bool) -> None:
        """The kernel is done with ``handle``: park it while the lease allows, else close."""
        lease = self._by_inode.get(inode)
        if (lease is not None and self.hold > 0
                and lease.state & H and handle.lease_key == lease.key
                and not handle.tree.conn.closed):
            parked = _Parked(handle, writable)
            lease.parked.append(parked)
            self.nursery.start_soon(self._expire, inode, parked)
            return
        await self._close(inode, handle)

    async def _expire(self, inode: int, parked: _Parked) -> None:
        with parked.timer:
            await trio.sleep(self.hold)
            if parked.done:
                return
            # Closed even if the inode's lease bookkeeping was replaced meanwhile: a
            # handle nobody closes keeps its file open on the server for ever (and a
            # deleted one pending, its directory impossible to remove).
            lease = self._by_inode.get(inode)
            if lease is not None and parked in lease.parked:
                lease.parked.remove(parked)
            parked.done = True
            await self._close(inode, parked.handle)

    @property
    def parked_count(self) -> int:
        return sum(len(lease.parked) for lease in self._by_inode.values())

    def parked_inodes(self) -> list[int]:
        return [inode for inode, lease in self._by_inode.items() if lease.parked]

    async def close_parked(self, inode: int) -> None:
        """Before this mount renames or deletes a file, its parked handles go: the server
        would otherwise break our own lease, or keep a deleted name pending."""
        lease = self._by_inode.get(inode)
        if lease is not None:
            await self._unpark(inode, lease)

    async def _unpark(self, inode: int, lease: _Lease) -> None:
        parked, lease.parked = lease.parked, []
        for p in parked:
            p.done = True
            p.timer.cancel()
            await self._close(inode, p.handle)

    async def _close(self, inode: int, handle: Open) -> None:
        try:
            with trio.CancelScope(shield=True):
                await handle.close()
        except QuicfsError as exc:
            log.debug("close of %s: %s", handle.name, exc)
        finally:
            self._closed(inode, handle)

    def _closed(self, inode: int, handle: Open) -> None:
        lease = self._by_inode.get(inode)
        if lease is not None and handle.lease_key == lease.key:
            lease.holders -= 1
            if lease.holders <= 0:
                # The server dropped the lease with its last open: nothing promises
                # the pages are current any more.
                lease.holders = 0
                lease.pages_valid = False
                lease.state = LeaseState.NONE

    def forget(self, inode: int) -> None:
        """The kernel forgot ``inode``: its lease bookkeeping goes once nothing holds it."""
        lease = self._by_inode.get(inode)
        if lease is not None and lease.holders == 0:
            del self._by_inode[inode]
            self.leases.unwatch(lease.key)

    async def connection_replaced(self) -> None:
        """After a reconnect nothing proves the lease held while we were away (another
        client may have written): every inode's pages go, and come back from the
        server."""
        for inode, lease in list(self._by_inode.items()):
            if lease.pages_valid:
                lease.pages_valid = False
                await self._drop_pages(inode)

    # ------------------------------------------------------------------ breaks
    async def _broken(self, inode: int, new: LeaseState) -> None:
        lease = self._by_inode.get(inode)
        if lease is None:
            return
        lost = lease.state & ~new
        lease.state = new
        log.debug("inode %d lease now %s (lost %s)", inode, new.name, lost.name)
        if lost & W:
            await self._drain(inode)
        if lost & R or not new & R:
            lease.pages_valid = False
            await self._drop_pages(inode)
        if lost & H or not new & H:
            await self.close_parked(inode)


__all__ = ["DEFAULT_HOLD", "PageCache"]
