"""Leases (MS-SMB2 3.2.4.3.8 request, 3.2.5.19.2 break): the client's caching rights.

A lease is named by a 16-byte key the client picks; every open made with that key shares
it, and the server keeps its state (Read, Handle, Write caching) until the last of those
opens is closed. When another client needs a right back, the server sends an unsolicited
lease break. The Link gives every connection it opens a way to ``notified`` (link.py), so
the breaks of a connection that replaced a lost one come here too. The connection's
receive task must not wait on anyone, so it only files the break here; a worker of ours
runs the key's owner callback (which flushes, drops caches, or closes handles, as the lost
right demands) and then acknowledges the new state when the server asked for an
acknowledgement (3.2.4.24).

A break is not to be trusted. A server sends it with SessionId 0 and unsigned (3.2.5.19),
so on TCP anyone on the path can forge one, and a hostile server can send a flood. So:

- a break for a key none of our opens holds (nor a CREATE of ours asks for) is dropped:
  no callback, no acknowledgement;
- a break only ever takes rights away: the state it leaves is what our opens were granted
  (by signed CREATE responses), less what earlier breaks took, and less what it takes;
  the worst it can do is a flush, a cache drop or a closed parked handle, never lost data;
- breaks wait at most one per key (a later one for the same key merges into it), so the
  queue is bounded by the leases we hold, and a fixed few workers handle them, no task
  per break;
- unauthenticated breaks are acted on at most RATE a second beyond a BURST.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from quicfs.client.connection import Reply
from quicfs.client.nursery import open_nursery
from quicfs.client.open import Open
from quicfs.client.tree import Tree
from quicfs.errors import QuicfsError
from quicfs.smb2.constants import LeaseState
from quicfs.smb2.control import LeaseBreakAcknowledgement, LeaseBreakNotification, parse_break

log = logging.getLogger("quicfs.leases")

#: Called with the state the lease is broken to; returns once nothing relies on the
#: rights that were lost.
BreakCallback = Callable[[LeaseState], Awaitable[None]]

#: Breaks handled at once: a break that waits on a slow flush holds up no other file's
#: break while a worker is free.
WORKERS = 4
#: Unauthenticated breaks acted on per second, beyond a burst of BURST.
RATE, BURST = 32.0, 64.0


def new_lease_key() -> bytes:
    return os.urandom(16)


@dataclass(slots=True)
class _Break:
    key: bytes
    #: The state the lease is left with (already bounded by what we hold).
    state: LeaseState
    ack: bool
    authenticated: bool


class Leases:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._owners: dict[bytes, BreakCallback] = {}
        #: Each open's lease state as breaks left it (its CREATE's grant until one came).
        self._left: weakref.WeakKeyDictionary[Open, LeaseState] = weakref.WeakKeyDictionary()
        #: Breaks waiting for a worker, one per key; keys a worker is handling.
        self._waiting: dict[bytes, _Break] = {}
        self._busy: set[bytes] = set()
        self._lot = trio.lowlevel.ParkingLot()
        self._tokens = BURST
        self._refilled = 0.0
        self.breaks = 0
        #: Breaks dropped: for keys we do not hold, or oplock breaks (we ask for none).
        self.ignored = 0

    def watch(self, key: bytes, callback: BreakCallback) -> None:
        self._owners[key] = callback

    def unwatch(self, key: bytes) -> None:
        self._owners.pop(key, None)

    def pending(self, key: bytes) -> bool:
        """Whether a break of ``key`` has come and its owner has not finished with it."""
        return key in self._waiting or key in self._busy

    # ------------------------------------------------------------------ receiving
    def notified(self, reply: Reply, authenticated: bool) -> None:
        """From the connection's receive task: file the break, never wait."""
        note = parse_break(reply.message)
        if not isinstance(note, LeaseBreakNotification):
            self._ignore("an oplock break (we hold no oplocks)", None)
            return
        key = note.lease_key
        opens = self.tree.opens.with_lease(key)
        if not opens and not self.tree.leasing[key]:
            self._ignore("a break of lease %s, which we do not hold", key)
            return
        held = LeaseState.NONE
        for handle in opens:
            held |= self._left.get(handle, handle.lease_state)
        # Before its open exists (the CREATE's answer is in, its caller not yet run) the
        # lease is taken as holding nothing: the break then takes all, the safe way.
        state = note.new_state & held
        for handle in opens:
            self._left[handle] = state
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.state &= state
            waiting.ack |= note.ack_required
            waiting.authenticated &= authenticated
        else:
            self._waiting[key] = _Break(key, state, note.ack_required, authenticated)
            self._lot.unpark()

    def _ignore(self, what: str, key: bytes | None) -> None:
        self.ignored += 1
        if self.ignored & (self.ignored - 1) == 0:  # 1, 2, 4, 8...: a flood logs little
            what %= () if key is None else (key.hex()[:8],)
            log.warning("ignored %s (%d ignored so far)", what, self.ignored)

    # ------------------------------------------------------------------ handling
    async def run(self) -> None:
        """Handle breaks until cancelled."""
        async with open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        while True:
            key = next((k for k in self._waiting if k not in self._busy), None)
            if key is None:
                await self._lot.park()
                continue
            brk = self._waiting.pop(key)
            self._busy.add(key)
            try:
                if not brk.authenticated:
                    await self._pace()
                await self._handle(brk)
            finally:
                self._busy.discard(key)
                if key in self._waiting:
                    self._lot.unpark()  # a break came for it meanwhile

    async def _pace(self) -> None:
        """A token bucket: RATE a second, BURST at most."""
        now = trio.current_time()
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * RATE)
        self._refilled = now
        self._tokens -= 1
        if self._tokens < 0:
            await trio.sleep(-self._tokens / RATE)

    async def _handle(self, brk: _Break) -> None:
        self.breaks += 1
        log.debug("lease %s broken to %s", brk.key.hex()[:8], brk.state.name)
        callback = self._owners.get(brk.key)
        if callback is not None:
            try:
                await callback(brk.state)
            except QuicfsError as exc:
                # The acknowledgement still goes out: holding it back would only stall the
                # other client for the break timeout (35 s), the error is the owner's.
                log.warning("while giving up a lease: %s", exc)
        if brk.ack:
            try:
                # A state below the one the server breaks to is allowed (3.3.5.22.2).
                await self.tree.request(LeaseBreakAcknowledgement(brk.key, brk.state))
            except QuicfsError as exc:
                # Our last open with this key closed meanwhile: the server has no lease
                # left to acknowledge (3.3.5.22.2 answers STATUS_OBJECT_NAME_NOT_FOUND).
                log.debug("lease break acknowledgement: %s", exc)


__all__ = ["BreakCallback", "Leases", "new_lease_key"]
