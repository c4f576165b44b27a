"""Directory leases (SMB 3.x; MS-SMB2 3.2.4.3.8 on a directory): what lets a listing
stay true past ``actimeo``.

While we hold Read caching on a directory, the server breaks it when anyone else adds,
removes or renames a name in it, or sets a name's attributes by path (Samba 4.22). So
the names one listing showed, and the attributes of its subdirectories, hold until the
break: the kernel's LOOKUPs again after actimeo need no round trip. What does not break
it: data written through a handle already open, and what happens deeper down. A file's
size and times are therefore never trusted past actimeo, and a directory's own
attributes only while its own lease holds too (fs/operations.py).

A lease lives as long as an open under its key: each is kept by one handle of its
directory, at most MAX_HELD, the least recently used let go first. Handle caching is
asked for too: without it another client's delete or rename of the directory would stay
pending on our handle; with it the server breaks it, and we close.

Our own changes in a leased directory name its key as their ParentLeaseKey (in a lease
context of no caching where they want none), so they break no lease of ours: what this
mount changes it already knows (fs/known.py). Before we remove or rename a directory,
its leases and those beneath are let go: our own handle would hold the removal up.

A lease is the connection's: after a reconnect none that was held counts. A break is
acted on at once (leases.py bounds forged ones), and a break only ever takes trust away.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio

from quicfs.client.connection import Connection
from quicfs.client.leases import Leases, new_lease_key
from quicfs.client.open import Open
from quicfs.client.tree import Tree
from quicfs.errors import QuicfsError
from quicfs.smb2.constants import Capabilities, LeaseState
from quicfs.smb2.create import LeaseRequestV2

log = logging.getLogger(__name__)

#: Directory handles kept open for their leases (each is an open on the server).
MAX_HELD = 64
WANTED = LeaseState.READ_CACHING | LeaseState.HANDLE_CACHING


@dataclass(eq=False, slots=True)
class Held:
    path: str
    handle: Open | None
    key: bytes
    conn: Connection
    #: When the lease was granted (trio time): what was learnt before it is not covered.
    since: float
    alive: bool = True


class DirectoryLeases:
    def __init__(self, tree: Tree, leases: Leases, nursery: trio.Nursery | None) -> None:
        self.tree = tree
        self.leases = leases
        #: Where handles are closed behind; without one no lease is asked for.
        self._nursery = nursery
        self._held: OrderedDict[str, Held] = OrderedDict()
        #: Directory leases taken, and lost to a break.
        self.taken = 0
        self.broken = 0

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def offered(self) -> bool:
        """Whether the server grants directory leases (its NEGOTIATE said so, 3.3.5.4)."""
        params = self.tree.conn.params
        return self._nursery is not None and params is not None \
            and bool(params.capabilities & Capabilities.DIRECTORY_LEASING)

    def request(self, path: str) -> tuple[Held, LeaseRequestV2]:
        """A lease to ask for with ``path``'s CREATE, and its record: watched from now,
        so a break that comes before ``adopt`` is not missed."""
        held = Held(path, None, new_lease_key(), self.tree.conn, 0.0)
        self.leases.watch(held.key, lambda state: self._broken(held))
        return held, LeaseRequestV2(lease_key=held.key, state=WANTED)

    def adopt(self, held: Held, handle: Open | None, *, keep: bool = True) -> Held | None:
        """Keep ``handle`` (the CREATE made with ``request()``; None if it failed) for
        its lease; None, and the handle closed behind, if the server granted less than
        Read and Handle, a break came already, or not ``keep`` (its listing is of no
        use)."""
        held.handle = handle
        if handle is None or not keep or not held.alive \
                or handle.lease_state & WANTED != WANTED:
            self._lose(held)
            return None
        # Granted by now: what is learnt from here on is covered.
        held.since = trio.current_time()
        old = self._held.pop(held.path, None)
        if old is not None:
            self._lose(old)
        self._held[held.path] = held
        self.taken += 1
        while len(self._held) > MAX_HELD:
            self._lose(self._held.popitem(last=False)[1])
        return held

    def alive(self, held: Held) -> bool:
        """Whether ``held`` still stands: no break, no reconnect since."""
        if held.alive and held.conn is not self.tree.conn:
            self._forget_all()  # a new connection: the server knows none of them
        if not held.alive:
            return False
        self._held.move_to_end(held.path)
        return True

    def current(self, path: str) -> Held | None:
        held = self._held.get(path)
        return held if held is not None and self.alive(held) else None

    def parent_key(self, path: str) -> bytes | None:
        """The lease key of ``path``'s directory, if we hold its lease: our CREATE of
        ``path`` names it as its ParentLeaseKey and so does not break it."""
        if not self._held:
            return None
        held = self.current(path.rpartition("/")[0])
        return held.key if held is not None else None

    def covers(self, path: str, since: float) -> bool:
        """Whether directory ``path``'s attributes as learnt at ``since`` still hold:
        its own lease (what changes inside it) and its parent's (what is set on it)
        were both held since before then."""
        if not path:
            return False  # the root's own attributes: no parent lease of ours covers them
        here = self.current(path)
        parent = self.current(path.rpartition("/")[0])
        return here is not None and parent is not None \
            and here.since <= since and parent.since <= since

    def let_go(self, held: Held) -> None:
        """Give a lease up (its listing was not kept)."""
        if self._held.get(held.path) is held:
            del self._held[held.path]
        self._lose(held)

    async def release(self, path: str) -> None:
        """Before we remove or rename directory ``path``: its lease and those beneath
        are given up, their handles closed (one of ours would hold the change up until
        the server had broken it)."""
        below = path + "/"
        going = [h for p, h in self._held.items() if p == path or p.startswith(below)]
        for held in going:
            del self._held[held.path]
            held.alive = False
            self.leases.unwatch(held.key)
        for held in going:
            await self._close(held)

    async def _broken(self, held: Held) -> None:
        """Any break: someone changed the directory (or wants our handle gone)."""
        self.broken += 1
        if self._held.get(held.path) is held:
            del self._held[held.path]
        held.alive = False
        self.leases.unwatch(held.key)
        await self._close(held)

    def _lose(self, held: Held) -> None:
        held.alive = False
        self.leases.unwatch(held.key)
        if held.handle is not None and self._nursery is not None:
            self._nursery.start_soon(self._close, held)

    def _forget_all(self) -> None:
        for held in self._held.values():
            held.alive = False
            self.leases.unwatch(held.key)
        self._held.clear()

    @staticmethod
    async def _close(held: Held) -> None:
        if held.handle is None:
            return
        try:
            await held.handle.close()
        except QuicfsError as exc:
            log.debug("closing %s (a directory lease's handle): %s", held.path, exc)


__all__ = ["MAX_HELD", "DirectoryLeases", "Held"]
