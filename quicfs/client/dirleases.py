"""Directory leases (SMB 3.x; MS-SMB2 3.2.4.3.8 on a directory): what lets a listing
stay true past ``actimeo``.

While we hold Read caching on a directory, the server breaks it when anyone else adds,
removes or renames a name in it, or sets a name's attributes by path (Samba 4.22). So
the names one listing showed, and the attributes of its subdirectories, hold until the
break: the kernel's LOOKUPs again after actimeo need no round trip. A rename of the
directory, or of one above it at any depth, breaks it too (the server must get our
handle out of the way: Handle caching). What does not break it: data written through a
handle already open, what happens deeper down, and attributes set on the directory
itself. So a file's size and times are never trusted past actimeo, and a directory's
own attributes only while its parent's lease holds too. No lease is trusted for
longer than TRUST seconds (cifs.ko's dir_cache_timeout): a server that never breaks
(or a change on its disk behind its back) is seen that late at the latest.

A lease lives as long as an open under its key: each is kept by one handle of its
directory, at most MAX_HELD, the least recently used let go first. Handle caching is
asked for too: without it another client's delete or rename of the directory would stay
pending on our handle; with it the server breaks it, and we close.

Each directory has one lease key for as long as we know it. Our CREATEs of anything in
it name that key as their ParentLeaseKey (in a lease context of no caching where they
want none), from before the lease is taken to after it is given up, so that neither
they nor the closes of what they opened break a lease of ours on it: what this mount
changes it already knows (fs/known.py). Before we remove or rename a directory, its
leases and those beneath are let go, and none is taken there meanwhile: a handle of
ours would hold our own change up (Samba refuses a rename with a handle open below).

A lease is the connection's: after a reconnect none that was held counts. A break is
acted on from the moment it arrives, before a worker runs it (leases.py bounds forged
ones), and a break only ever takes trust away.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
#: Directories whose lease key is remembered.
MAX_KEYS = 4096
#: Seconds a lease is trusted at most (cifs.ko's dir_cache_timeout is 30).
TRUST = 30.0
#: Seconds between a break and our close of the handle (_on_break says why).
BREAK_CLOSE_DELAY = 0.05
WANTED = LeaseState.READ_CACHING | LeaseState.HANDLE_CACHING


@dataclass(eq=False, slots=True)
class Held:
    path: str
    handle: Open | None
    key: bytes
    #: The connection it was granted on, and when (trio time): what was learnt before
    #: the grant is not covered.
    conn: Connection | None = None
    since: float = 0.0
    alive: bool = True


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _under(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or beneath it, by any spelling a server that ignores
    case would take for it (letting go of one too many costs only a relisting)."""
    path, top = path.casefold(), top.casefold()
    return path == top or path.startswith(top + "/")


class DirectoryLeases:
    def __init__(self, tree: Tree, leases: Leases, nursery: trio.Nursery | None, *,
                 top: str = "") -> None:
        """``top``: the directory mounted, whose own parent we never lease."""
        self.tree = tree
        self.leases = leases
        self.top = top
        #: Where handles are closed behind; without one no lease is asked for.
        self._nursery = nursery
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        #: Leases asked for and not yet adopted, by key.
        self._asked: dict[bytes, list[Held]] = {}
        #: Broken leases whose handles their break's handler closes (_on_break).
        self._closing: dict[bytes, list[Held]] = {}
        #: Directories being removed or renamed by us (how many at once): no lease
        #: is taken at or beneath them meanwhile.
        self._away: Counter[str] = Counter()
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

    # ------------------------------------------------------------------ keys
    def _key(self, path: str) -> bytes:
        key = self._keys.get(path)
        if key is None:
            key = self._keys[path] = new_lease_key()
            while len(self._keys) > MAX_KEYS:
                old = next(iter(self._keys))
                if old in self._held:
                    self._keys.move_to_end(old)
                    continue
                del self._keys[old]
        else:
            self._keys.move_to_end(path)
        return key

    def parent_key(self, path: str) -> bytes | None:
        """The lease key of ``path``'s directory, for our CREATE of ``path`` to name as
        its ParentLeaseKey (so that it breaks no lease of ours); None where the server
        grants no directory leases."""
        return self._key(_parent(path)) if self.offered and path else None

    # ------------------------------------------------------------------ taking
    def may_lease(self, path: str) -> bool:
        return self.offered and not any(_under(path, away) for away in self._away)

    def asked(self, path: str) -> bool:
        """Whether a lease on ``path`` is asked for and not answered yet."""
        key = self._keys.get(path)
        return key is not None and key in self._asked

    def request(self, path: str) -> tuple[Held, LeaseRequestV2]:
        """A lease to ask for with directory ``path``'s CREATE, and its record: a break
        that comes before ``adopt`` is not missed."""
        held = Held(path, None, self._key(path))
        self._asked.setdefault(held.key, []).append(held)
        self.leases.watch(held.key, lambda state: self._on_break(held.key))
        return held, LeaseRequestV2(lease_key=held.key, state=WANTED)

    def adopt(self, held: Held, handle: Open | None, *, keep: bool = True) -> Held | None:
        """Keep ``handle`` (the CREATE made with ``request()``; None if it failed) for
        its lease. None, and the handle closed behind, if the server granted less than
        Read and Handle, a break came meanwhile, we removed or renamed it or a directory
        above it meanwhile, or not ``keep`` (its listing is of no use)."""
        asked = self._asked.get(held.key, [])
        if held in asked:
            asked.remove(held)
            if not asked:
                del self._asked[held.key]
        held.handle = handle
        if handle is None or not keep or not held.alive \
                or self.leases.pending(held.key) or not self.may_lease(held.path) \
                or handle.lease_state & WANTED != WANTED:
            if handle is None:
                self._keys.pop(held.path, None)  # refused: maybe a key still in use
            self._drop(held)
            return None
        held.conn = self.tree.conn
        held.since = trio.current_time()  # granted by now: what is learnt later counts
        old = self._held.pop(held.path, None)
        self._held[held.path] = held
        if old is not None:
            self._drop(old)  # (the same key: the lease stays with the new handle)
        self.taken += 1
        while len(self._held) > MAX_HELD:
            self._drop(next(iter(self._held.values())))
        return held

    # ------------------------------------------------------------------ trusting
    def alive(self, held: Held) -> bool:
        """Whether what was learnt under ``held`` may still be trusted: no break (come
        or waiting), no reconnect, younger than TRUST."""
        if not self._standing(held):
            return False
        self._held.move_to_end(held.path)
        return True

    def _standing(self, held: Held) -> bool:
        if held.alive and held.conn is not self.tree.conn:
            self._forget_old()
        if held.alive and self.leases.pending(held.key):
            # Come, not yet handled: trusted no more from now (its handler closes it).
            self._broken(held.key)
        if held.alive and trio.current_time() - held.since >= TRUST:
            self._drop(held)
        return held.alive

    def current(self, path: str) -> Held | None:
        held = self._held.get(path)
        return held if held is not None and self.alive(held) else None

    def covers(self, path: str, since: float) -> bool:
        """Whether directory ``path``'s attributes as learnt at ``since`` still hold:
        its own lease (what changes inside it) and its parent's (what is set on it)
        were both held since before then."""
        if path == self.top:
            return False  # what is set on it: no lease of ours on its parent tells
        here = self.current(path)
        parent = self._held.get(_parent(path))
        return here is not None and parent is not None and self._standing(parent) \
            and here.since <= since and parent.since <= since

    # ------------------------------------------------------------------ letting go
    def let_go(self, held: Held) -> None:
        """Give a lease up (its listing was not kept)."""
        self._drop(held)

    @asynccontextmanager
    async def letting_go(self, *paths: str) -> AsyncIterator[None]:
        """Around our own removal or rename of directories ``paths``: their leases and
        those beneath are given up first (their handles closed), none is taken there
        meanwhile, and their keys are forgotten (a new directory there gets a new
        one)."""
        self._away.update(paths)
        try:
            for asked in self._asked.values():  # in flight: not to be kept
                for held in asked:
                    if any(_under(held.path, a) for a in paths):
                        held.alive = False
            going = [h for p, h in self._held.items() if any(_under(p, a) for a in paths)]
            for held in going:
                self._forget(held)
            for held in going:
                await self._close(held)
            yield
        finally:
            self._away.subtract(paths)
            self._away = +self._away
            for key in [p for p in self._keys if any(_under(p, a) for a in paths)]:
                del self._keys[key]

    async def _on_break(self, key: bytes) -> None:
        """Any break: someone changed the directory (or wants our handle gone): its
        handle is closed (before the break is acknowledged), a moment later. Closed at
        once, Samba 4.22 refused another client's rename of a directory above it about
        one time in eight (STATUS_ACCESS_DENIED); 50 ms later, never in 30 tries; and
        acknowledged first, nearly always."""
        self._broken(key)
        await trio.sleep(BREAK_CLOSE_DELAY)
        await self._close_broken(key)

    def _broken(self, key: bytes) -> None:
        """Lease ``key`` is broken: what it holds is trusted no more."""
        hit = [h for h in self._held.values() if h.key == key]
        asked = self._asked.get(key, [])
        if hit or asked:
            self.broken += 1
        for held in asked:
            held.alive = False
        for held in hit:
            held.alive = False
            del self._held[held.path]
            self._closing.setdefault(key, []).append(held)

    async def _close_broken(self, key: bytes) -> None:
        for held in self._closing.pop(key, []):
            await self._close(held)
        self._unwatch(key)

    def _drop(self, held: Held) -> None:
        """Let ``held`` go: trusted no more, its handle closed behind."""
        self._forget(held)
        if held.handle is not None and self._nursery is not None:
            self._nursery.start_soon(self._close, held)

    def _forget(self, held: Held) -> None:
        held.alive = False
        if self._held.get(held.path) is held:
            del self._held[held.path]
        self._unwatch(held.key)

    def _unwatch(self, key: bytes) -> None:
        if not any(h.key == key for h in self._held.values()) \
                and key not in self._asked and key not in self._closing:
            self.leases.unwatch(key)

    def _forget_old(self) -> None:
        """A reconnect: what was held on the old connection is gone with it (its
        handles were not reopened: link.py)."""
        for held in [h for h in self._held.values() if h.conn is not self.tree.conn]:
            self._forget(held)

    @staticmethod
    async def _close(held: Held) -> None:
        if held.handle is None:
            return
        try:
            await held.handle.close()
        except QuicfsError as exc:
            log.debug("closing %s (a directory lease's handle): %s", held.path, exc)


__all__ = ["MAX_HELD", "TRUST", "DirectoryLeases", "Held"]
