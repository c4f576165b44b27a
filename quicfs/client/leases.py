"""Leases (MS-SMB2 3.2.4.3.8 request, 3.2.5.19.2 break): the client's caching rights.

A lease is named by a 16-byte key the client picks; every open made with that key shares
it, and the server keeps its state (Read, Handle, Write caching) until the last of those
opens is closed. When another client needs a right back, the server sends an unsolicited
lease break. The connection's receive task must not wait on anyone, so it only queues the
break here; a task of ours runs the key's owner callback (which flushes, drops caches, or
closes handles, as the lost right demands) and then acknowledges the new state when the
server asked for an acknowledgement (3.2.4.24).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable

import trio

from quicfs.client.connection import Reply
from quicfs.client.nursery import open_nursery
from quicfs.client.tree import Tree
from quicfs.errors import QuicfsError
from quicfs.smb2.constants import LeaseState
from quicfs.smb2.control import LeaseBreakAcknowledgement, LeaseBreakNotification, parse_break

log = logging.getLogger("quicfs.leases")

#: Called with the state the lease is broken to; returns once nothing relies on the
#: rights that were lost.
BreakCallback = Callable[[LeaseState], Awaitable[None]]


def new_lease_key() -> bytes:
    return os.urandom(16)


class Leases:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._owners: dict[bytes, BreakCallback] = {}
        self._send, self._receive = trio.open_memory_channel[LeaseBreakNotification](math.inf)
        self.breaks = 0
        tree.conn.break_handler = self._notified

    def watch(self, key: bytes, callback: BreakCallback) -> None:
        self._owners[key] = callback

    def unwatch(self, key: bytes) -> None:
        self._owners.pop(key, None)

    def _notified(self, reply: Reply) -> None:
        note = parse_break(reply.message)
        # Oplock breaks cannot arrive: we never ask for oplocks, only leases.
        if isinstance(note, LeaseBreakNotification):
            self._send.send_nowait(note)

    async def run(self) -> None:
        """Handle breaks until cancelled; each in its own task, so a break that waits on
        a slow flush does not hold up the breaks of other files."""
        async with open_nursery() as nursery:
            async for note in self._receive:
                nursery.start_soon(self._handle, note)

    async def _handle(self, note: LeaseBreakNotification) -> None:
        self.breaks += 1
        log.debug("lease %s broken %s -> %s", note.lease_key.hex()[:8],
                  note.current_state.name, note.new_state.name)
        callback = self._owners.get(note.lease_key)
        if callback is not None:
            try:
                await callback(note.new_state)
            except QuicfsError as exc:
                # The acknowledgement still goes out: holding it back would only stall the
                # other client for the break timeout (35 s), the error is the owner's.
                log.warning("while giving up a lease: %s", exc)
        if note.ack_required:
            try:
                await self.tree.request(LeaseBreakAcknowledgement(note.lease_key,
                                                                  note.new_state))
            except QuicfsError as exc:
                # Our last open with this key closed meanwhile: the server has no lease
                # left to acknowledge (3.3.5.22.2 answers STATUS_OBJECT_NAME_NOT_FOUND).
                log.debug("lease break acknowledgement: %s", exc)


__all__ = ["BreakCallback", "Leases", "new_lease_key"]
