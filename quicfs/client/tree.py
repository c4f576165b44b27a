"""A connected share (MS-SMB2 3.2.4.2.4): TREE_CONNECT, and the requests made on it.

Every request on the share passes here, so this is where a lost connection is survived:
with a ``recover`` hook (the Link gives one), a request that failed with ConnectionLost
waits for the hook to bring the connection back (new transport, session and tree, durable
opens reopened) and is sent again, marked as a replay, with the FileId its open has now.

A request the server answers STATUS_NETWORK_SESSION_EXPIRED is sent again once the
session has authenticated again (session.py, MS-SMB2 3.2.5.1.6); the caller sees nothing.

On a soft mount (``timeo`` set) a request the server does not finish within ``timeo``
seconds fails with TimedOut: an answer that never comes, or STATUS_PENDING without end.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from quicfs.client.connection import Reply, Request, command_name
from quicfs.client.interrupt import wait_interruptibly
from quicfs.client.session import Session
from quicfs.errors import ConnectionLost, StaleHandle, TimedOut, UsageError
from quicfs.options import Options
from quicfs.smb2.constants import ShareFlags, ShareType
from quicfs.smb2.control import TreeDisconnectRequest
from quicfs.smb2.fileid import FileId
from quicfs.smb2.status import Status
from quicfs.smb2.tree import TreeConnectRequest, TreeConnectResponse

if TYPE_CHECKING:
    from quicfs.client.connection import Connection
    from quicfs.client.open import Open

#: Brings the connection back after ``conn`` failed; raises if it cannot (soft mounts).
RecoverHook = Callable[["Connection"], Awaitable[None]]


class OpenSet(weakref.WeakSet["Open"]):
    """The opens of a tree (weakly), also found by lease key: a lease break is matched
    to the opens it concerns without a look at every open."""

    def __init__(self) -> None:
        super().__init__()
        self._by_key: dict[bytes, list[weakref.ref[Open]]] = {}

    def add(self, handle: Open) -> None:
        super().add(handle)
        key = handle.lease_key
        if key is None:
            return
        refs = self._by_key.setdefault(key, [])
        by_key = self._by_key

        def gone(ref: weakref.ref[Open]) -> None:
            refs.remove(ref)
            if not refs and by_key.get(key) is refs:
                del by_key[key]

        refs.append(weakref.ref(handle, gone))

    def with_lease(self, key: bytes) -> list[Open]:
        """The opens not closed yet that were made under lease ``key``."""
        found = [ref() for ref in self._by_key.get(key, ())]
        return [h for h in found if h is not None and not h.closed]


class Tree:
    def __init__(self, session: Session, server: str, share: str,
                 opts: Options | None = None, *, recover: RecoverHook | None = None) -> None:
        opts = opts or Options()
        self.session = session
        self.conn = session.conn
        self.server = server
        self.share = share
        self.tree_id = 0
        self.share_flags = ShareFlags.NONE
        self.encrypt = False
        #: Brings a lost connection back (the Link's); None: a lost connection fails
        #: the requests on it.
        self.recover = recover
        #: Opens on this tree, for reopening after a reconnect and for lease breaks.
        #: Whoever makes an open adds it (Share._opened); Open.close takes it off.
        self.opens = OpenSet()
        #: Lease keys asked for by CREATEs not answered yet (how many ask for each): a
        #: break may come for one before its open exists.
        self.leasing: Counter[bytes] = Counter()
        #: Seconds a request may take on a soft mount (None: a hard mount waits).
        self.timeo: float | None = None if opts.hard else opts.timeo
        #: Entries a directory listing may bring (client/directory.py).
        self.max_dir_entries = opts.max_dir_entries
        #: FileIds of reopened handles: old -> current. Requests built before a reconnect
        #: still carry the old one.
        self._moved: dict[FileId, FileId] = {}
        self._stale: set[FileId] = set()
        self.replays = 0
        self._held: trio.Event | None = None

    @property
    def unc(self) -> str:
        return f"\\\\{self.server}\\{self.share}"

    async def connect(self) -> None:
        reply = await self.conn.request(
            TreeConnectRequest(self.unc), keys=self.session.keys,
            encrypt=self.session.encrypt_data,
        )
        resp = TreeConnectResponse.unpack(reply.message)
        self.tree_id = reply.header.tree_id
        self.share_flags = resp.share_flags
        if resp.share_type != ShareType.DISK:
            await self.disconnect()
            raise NotADiskShare(self.share)
        # 3.2.5.5: a share that asks for encryption gets it even if the session does not.
        wants = bool(resp.share_flags & ShareFlags.ENCRYPT_DATA) or self.session.encrypt_data
        params = self.conn.params
        transport_secured = params is not None and params.transport_security
        self.encrypt = (wants and not transport_secured) or self.session.seal
        if self.encrypt and self.session.cipher is None:
            from quicfs.errors import ProtocolError

            raise ProtocolError(f"share {self.share} requires encryption; no cipher negotiated")

    async def rebind(self, session: Session) -> None:
        """Go on over ``session``, on the connection that replaced a lost one: TREE_CONNECT
        there (3.2.4.2.4). The opens are the caller's to reopen (3.2.4.4)."""
        self.session, self.conn = session, session.conn
        await self.connect()

    async def request(self, req: Request, *, allowed: Sequence[int] = ()) -> Reply:
        [reply] = await self._send([req], related=False, allowed=allowed)
        return reply

    async def chain(self, reqs: Sequence[Request]) -> list[Reply]:
        """A related compound (3.2.4.1.4): later requests act on the first's FileId.

        Nothing unrelated goes ahead of it: a request that goes async in the middle of
        a compound is cancelled and fails the rest (3.3.5.2.7's product note: only a
        CREATE may; Samba answers STATUS_INTERNAL_ERROR, and a reply whose signature
        does not check), and a CREATE that must break a lease goes async."""
        return await self._send(reqs, related=True)

    async def request_now(self, req: Request) -> Reply:
        """Send on the current connection at once: not held, not replayed (the requests
        that re-establish the tree itself)."""
        return await self.conn.request(req, keys=self.session.keys, tree_id=self.tree_id,
                                       encrypt=self.encrypt)

    def hold(self) -> Callable[[], None]:
        """Make requests wait (the tree is being re-established); call what this returns
        to let them go."""
        held = self._held = trio.Event()

        def release() -> None:
            if self._held is held:
                self._held = None
            held.set()

        return release

    async def _send(self, reqs: Sequence[Request], *, related: bool,
                    allowed: Sequence[int] = ()) -> list[Reply]:
        keys = [key for req in reqs for ctx in getattr(req, "contexts", ())
                if (key := getattr(ctx, "lease_key", None)) is not None]
        if not keys:
            return await self._send_again(reqs, related=related, allowed=allowed)
        self.leasing.update(keys)
        try:
            return await self._send_again(reqs, related=related, allowed=allowed)
        finally:
            self.leasing.subtract(keys)
            for key in keys:
                if self.leasing[key] <= 0:
                    del self.leasing[key]

    async def _send_again(self, reqs: Sequence[Request], *, related: bool,
                          allowed: Sequence[int]) -> list[Reply]:
        """Send; after a lost connection send again (once it is back) as a replay, and
        after STATUS_NETWORK_SESSION_EXPIRED once the session is renewed (3.2.5.1.6)."""
        replay = False
        while True:
            while self._held is not None:
                await wait_interruptibly(self._held.wait)
            conn, session = self.conn, self.session
            await session.settled()
            try:
                # A session whose renewal failed for want of credentials logs in again
                # here once they are back (session.py); the connection may be lost then.
                await session.usable()
                seen = session.renewals
                replies = await self._send_timed(conn, reqs, related, allowed, replay)
                if replies[0].status != Status.NETWORK_SESSION_EXPIRED:
                    # (A later member of a compound expiring alone is left to its
                    # caller: the first may have opened a file a replay would open again.)
                    return replies
                await session.renew(seen)
            except ConnectionLost:
                if self.recover is None:
                    raise
                await wait_interruptibly(partial(self.recover, conn))
                self.replays += 1
                replay = True

    async def _send_timed(self, conn: Connection, reqs: Sequence[Request], related: bool,
                          allowed: Sequence[int], replay: bool) -> list[Reply]:
        if self.timeo is None:
            return await self._send_once(conn, reqs, related, allowed, replay)
        with trio.move_on_after(self.timeo):
            return await self._send_once(conn, reqs, related, allowed, replay)
        raise TimedOut(f"{self.server} did not finish {command_name(reqs[0].command)} "
                       f"within {self.timeo:g} s (soft mount)")

    async def _send_once(self, conn: Connection, reqs: Sequence[Request], related: bool,
                         allowed: Sequence[int], replay: bool) -> list[Reply]:
        if not related:
            return [await conn.request(
                self._current(reqs[0]), keys=self.session.keys, tree_id=self.tree_id,
                encrypt=self.encrypt, allowed=(*allowed, Status.NETWORK_SESSION_EXPIRED),
                replay=replay)]
        return await conn.send_chain(
            [self._current(r) for r in reqs], keys=self.session.keys, tree_id=self.tree_id,
            encrypt=self.encrypt, related=True, replay=replay)

    def _current(self, req: Request) -> Request:
        file_id = getattr(req, "file_id", None)
        if file_id is None or not (self._moved or self._stale):
            return req
        if file_id in self._stale:
            raise StaleHandle("the file's handle did not survive the reconnect")
        now = self._moved.get(file_id)
        return dataclasses.replace(req, file_id=now) if now is not None else req  # type: ignore[type-var]

    def moved(self, old: FileId, new: FileId) -> None:
        """A reopen gave ``old``'s open the FileId ``new``."""
        for k, v in list(self._moved.items()):
            if v == old:
                self._moved[k] = new
        self._moved[old] = new

    def stale(self, file_id: FileId) -> None:
        """The open once known by ``file_id`` is gone for good."""
        for k, v in list(self._moved.items()):
            if v == file_id:
                self._stale.add(k)
        self._stale.add(file_id)

    async def disconnect(self) -> None:
        if self.conn.closed or not self.tree_id:
            return
        tree_id, self.tree_id = self.tree_id, 0
        await self.conn.request(TreeDisconnectRequest(), keys=self.session.keys, tree_id=tree_id,
                                encrypt=self.encrypt)


class NotADiskShare(UsageError):
    def __init__(self, share: str) -> None:
        super().__init__(f"share {share} is not a disk share")
