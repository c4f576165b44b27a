"""The share's connection, and the way back to it when it is lost.

A Link owns the current transport, Connection and Session of one Tree, and swaps them
when the connection dies (TCP reset, QUIC idle timeout, gateway restart, the smbd serving
us killed, a silent server). It owns the tree's Leases too: every connection it opens is
built to send its lease breaks there (3.2.5.19), so none is lost with a swap. A swap:

1. a new transport of the kind the first connection got (under ``transport=auto`` too:
   an attacker who drops UDP for a while must not move a QUIC mount to TCP; only
   ``fallback=tcp`` races again, connect.py), NEGOTIATE;
2. SESSION_SETUP naming the lost session as PreviousSessionId, so the server lets it go
   and its durable opens become reclaimable (MS-SMB2 3.2.4.2.3, 3.3.5.5.3);
3. TREE_CONNECT again; then every durable open is reopened by its CreateGuid and lease
   key (3.2.4.4); one the server no longer has turns stale (ESTALE, never wrong data);
4. the requests that failed with the connection are sent again by the Tree, marked as
   replays (2.2.1.2).

``hard`` (the default) tries without end; ``soft`` gives up after ``timeo`` seconds and
the waiting calls fail. A watch task finds a dead connection nobody is told about: a
request outstanding while nothing is heard for the transport's ``dead_after`` (QUIC
probes with PINGs, so there that is a few seconds), or an idle
connection that does not answer an ECHO (every ``echo_interval``).

QUIC connection migration needs none of this: the QUIC connection itself survives an
address change (transport/quic/, RFC 9000 9), and the Link never notices.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from quicfs.client.connection import Connection, Reply, copy_error, open_connection
from quicfs.client.leases import Leases
from quicfs.client.session import Session, refuses_credentials
from quicfs.client.tree import Tree
from quicfs.errors import ConnectError, ConnectionLost, QuicfsError, SMBError, StaleHandle
from quicfs.options import Credentials, Options
from quicfs.transport.connect import open_transport
from quicfs.url import ShareURL

log = logging.getLogger("quicfs")

#: A request outstanding and nothing heard for this long: ask the transport for a sign of
#: life (a QUIC PING). It is declared dead after its own ``dead_after``.
PROBE_AFTER = 1.0
#: An idle connection's ECHO must be answered within this.
ECHO_WITHIN = 5.0
#: Backoff between reconnect attempts, from the first to the most.
RETRY_FIRST, RETRY_MOST = 0.1, 2.0


@dataclass(eq=False)
class _Recovery:
    done: trio.Event = field(default_factory=trio.Event)
    error: QuicfsError | None = None


@dataclass
class LinkStats:
    reconnects: int = 0
    reopened: int = 0
    #: Opens the server had lost, opened again by name (still the same file).
    reopened_by_name: int = 0
    lost_handles: int = 0
    last_cause: str = ""
    last_seconds: float = 0.0


class Link:
    def __init__(self, url: ShareURL, opts: Options, nursery: trio.Nursery) -> None:
        self.url = url
        self.opts = opts
        self.nursery = nursery
        self.tree: Tree | None = None
        #: The tree's leases, which every connection of the link sends its breaks to.
        self.leases: Leases | None = None
        self.stats = LinkStats()
        #: One ClientGuid for every connection of the link: a durable open is reclaimed
        #: only by the client that made it (MS-SMB2 3.3.5.9.12).
        self.client_guid = uuid.uuid4()
        #: Called after each reconnect (the mount drops caches nothing vouches for now).
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self._scopes: dict[Connection, trio.CancelScope] = {}
        # Totals of the connections before the current one.
        self._bytes_before = [0, 0]
        self._smb_before = [0, 0]  # messages sent, sends waited on
        self._migrations_before = 0
        self._renewals_before = 0  # renewals of the sessions before the current one
        self._recovery: _Recovery | None = None
        self._closing = False
        #: Why a soft mount stopped waiting for the server; "" while it has not.
        self._given_up = ""
        #: The server's refusal of the password we hold, and that password's credentials:
        #: no login is tried again with them (each would count toward locking the account
        #: out, and a reconnect retries every 2 s), only once they change.
        self._refused: tuple[QuicfsError, Credentials] | None = None
        #: The transport the first connection got ("quic", "tcp"); reconnects keep it.
        self._kind: str | None = None

    # ------------------------------------------------------------------ connecting
    async def start(self) -> Tree:
        """The first connection: its errors go straight to the caller (a mount that
        cannot connect fails at once, it does not retry)."""
        session = await self._open()
        self._kind = session.conn.transport.kind
        tree = Tree(session, self.url.host, self.url.share, self.opts, recover=self.recover)
        await tree.connect()
        self.tree = tree
        self.leases = Leases(tree)
        self.nursery.start_soon(self.leases.run)
        self.nursery.start_soon(self._watch)
        return tree

    async def _open(self, previous_session_id: int = 0) -> Session:
        opts = self.opts
        try:
            transport = await open_transport(self.url.host, self.url.port, opts,
                                             self.nursery, keep=self._kind)
        except (QuicfsError, OSError):
            raise
        except Exception as exc:
            # Opening failed in a way nobody named (a QUIC engine that could not build
            # its handshake): this attempt fails, and a reconnect tries again.
            log.debug("opening a transport to %s failed", self.url.host, exc_info=True)
            raise ConnectError(f"cannot open a transport to {self.url.host}: "
                               f"{type(exc).__name__}: {exc}") from exc
        conn: Connection = await self.nursery.start(self._run_connection, transport)
        try:
            creds = opts.resolved_credentials()
            # A renewal (the server expired the session) reads them again: a credentials
            # file may have changed since, and Kerberos takes a new ticket (session.py).
            session = Session(conn, seal=opts.seal, credentials=opts.resolved_credentials)
            with trio.fail_after(max(opts.connect_timeout, 1.0) * 6):
                await session.setup(username=creds.username, password=creds.password,
                                    domain=creds.domain,
                                    previous_session_id=previous_session_id)
        except BaseException as exc:
            self._drop(conn)
            if creds.password is not None and refuses_credentials(exc):
                self._refused = (exc, creds)  # type: ignore[assignment]
            raise
        return session

    def _still_refused(self) -> QuicfsError | None:
        """The refusal of the credentials we hold, while they are the ones refused (a
        credentials file read again may hold new ones)."""
        if self._refused is None:
            return None
        error, refused = self._refused
        try:
            if self.opts.resolved_credentials() == refused:
                return error
        except (QuicfsError, OSError):
            return error  # unreadable now: nothing new to try
        self._refused = None
        return None

    async def _run_connection(self, transport: object, *,
                              task_status: trio.TaskStatus[Connection]) -> None:
        """Holds one connection open until it is replaced or the link closes."""
        with trio.CancelScope() as scope:
            try:
                async with open_connection(
                    transport,  # type: ignore[arg-type]
                    server_name=self.url.host,
                    client_guid=self.client_guid,
                    negotiate_within=max(self.opts.connect_timeout, 1.0) * 2,
                    on_break=self._break,
                ) as conn:
                    self._scopes[conn] = scope
                    task_status.started(conn)
                    await trio.sleep_forever()
            finally:
                await _close(transport)

    def _break(self, reply: Reply, authenticated: bool) -> None:
        """A break from any connection of ours (3.2.5.19), from its receive task. One
        that comes before the tree is connected concerns no open of ours: dropped."""
        if self.leases is not None:
            self.leases.notified(reply, authenticated)

    def _drop(self, conn: Connection) -> None:
        scope = self._scopes.pop(conn, None)
        if scope is not None:
            scope.cancel()
            self._bytes_before[0] += conn.bytes_sent
            self._bytes_before[1] += conn.bytes_received
            self._smb_before[0] += conn.messages_sent
            self._smb_before[1] += conn.sends
            self._migrations_before += getattr(conn.transport, "migrations", 0)

    def snapshot(self) -> dict[str, Any]:
        """Counters and the current path, for `quicfs stats`."""
        tree = self.tree
        assert tree is not None
        conn = tree.conn
        transport = conn.transport
        out: dict[str, Any] = {
            "server": str(self.url),
            "transport": transport.kind,
            "peer": transport.peer,
            "connected": not conn.closed,
            "bytes_sent": self._bytes_before[0] + conn.bytes_sent,
            "bytes_received": self._bytes_before[1] + conn.bytes_received,
            "smb_messages_sent": self._smb_before[0] + conn.messages_sent,
            "smb_sends": self._smb_before[1] + conn.sends,
            "requests_in_flight": conn.in_flight,
            "credits": conn.credits_available,
            "reconnects": self.stats.reconnects,
            "migrations": self._migrations_before + getattr(transport, "migrations", 0),
            "replays": tree.replays,
            "session_renewals": self._renewals_before + tree.session.renewals,
            "reopened_handles": self.stats.reopened,
            "reopened_by_name": self.stats.reopened_by_name,
            "stale_handles": self.stats.lost_handles,
            "last_reconnect_cause": self.stats.last_cause,
            "last_reconnect_seconds": round(self.stats.last_seconds, 3),
        }
        transport_stats = getattr(transport, "stats", None)
        if callable(transport_stats):
            out.update(transport_stats())
        return out

    # ------------------------------------------------------------------ recovering
    async def recover(self, broken: Connection) -> None:
        """Wait until the connection that replaced ``broken`` is up (one reconnect for
        all callers); raises ConnectionLost when a soft mount gives up."""
        tree = self.tree
        if tree is None or self._closing:
            raise ConnectionLost("connection closed")
        if tree.conn is not broken and not tree.conn.closed:
            return  # someone brought it back already
        refused = self._still_refused()
        if refused is not None:
            raise copy_error(refused)
        if self._given_up:
            # A soft mount whose server stayed away: calls fail at once until it is back
            # (the watch keeps trying), rather than each waiting timeo again.
            self._start_recovery(broken)
            raise ConnectionLost(self._given_up)
        recovery = self._start_recovery(broken)
        await recovery.done.wait()
        if recovery.error is not None:
            raise copy_error(recovery.error)

    def _start_recovery(self, broken: Connection) -> _Recovery:
        if self._recovery is None:
            self._recovery = _Recovery()
            self.nursery.start_soon(self._reconnect, broken, self._recovery)
        return self._recovery

    async def _reconnect(self, broken: Connection, recovery: _Recovery) -> None:
        assert self.tree is not None
        started = trio.current_time()
        cause = str(broken.failure or "connection lost")
        log.log(logging.INFO if self._given_up else logging.WARNING,
                "connection to %s lost (%s); reconnecting", broken.transport.peer, cause)
        self._drop(broken)
        # Named in every attempt: a failed attempt leaves its own session on the tree.
        previous = self.tree.session.session_id
        deadline = None if self.opts.hard else started + self.opts.timeo
        delay = RETRY_FIRST
        try:
            while True:
                if self._closing:
                    recovery.error = ConnectionLost("the share is being closed")
                    return
                error: BaseException | None = None
                # A soft mount's attempt ends at its deadline, however far it got.
                with trio.move_on_at(deadline if deadline is not None else math.inf):
                    try:
                        await self._reestablish(previous)
                        break
                    except (QuicfsError, OSError, trio.TooSlowError) as exc:
                        error = exc
                if self._refused is not None:
                    recovery.error = self._refused[0]
                    log.warning("reconnect to %s: the server refused the credentials (%s); "
                                "not tried again until they change", self.url.host, error)
                    return
                now = trio.current_time()
                if deadline is not None and now + delay > deadline:
                    recovery.error = ConnectionLost(
                        f"{self.url.host} did not come back within "
                        f"{self.opts.timeo:g} s (soft mount)")
                    if not self._given_up:  # said once; the retries go on quietly
                        log.warning("%s", recovery.error)
                    self._given_up = str(recovery.error)
                    return
                log.info("reconnect to %s failed: %s; again in %.1f s",
                         self.url.host, error or "timed out", delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)
            self._given_up = ""
            seconds = trio.current_time() - started
            self.stats.reconnects += 1
            self.stats.last_cause, self.stats.last_seconds = cause, seconds
            log.warning("reconnected to %s over %s in %.2f s (cause: %s)", self.url.host,
                        self.tree.conn.transport.kind.upper(), seconds, cause)
            # Not awaited: dropping the kernel's cached pages waits on pages that reads
            # in flight hold locked, and those reads wait on this very recovery.
            for callback in self.on_reconnect:
                self.nursery.start_soon(callback)
        finally:
            self._recovery = None
            recovery.done.set()

    async def _reestablish(self, previous_session_id: int) -> None:
        tree = self.tree
        assert tree is not None
        session = await self._open(previous_session_id=previous_session_id)
        conn = session.conn
        # Other requests wait at the tree until it is whole again: sent meanwhile on the
        # new session they would carry a tree id or FileIds it does not know yet.
        resumed = tree.hold()
        try:
            self._renewals_before += tree.session.renewals
            await tree.rebind(session)
            await self._reopen_all(tree)
        except BaseException:
            self._drop(conn)
            raise
        finally:
            resumed()

    async def _reopen_all(self, tree: Tree) -> None:
        for handle in list(tree.opens):
            if handle.closed or handle.stale:
                continue
            if handle.disposable:
                handle.mark_stale()
                continue
            try:
                if await handle.reopen():
                    self.stats.reopened += 1
                else:
                    self.stats.reopened_by_name += 1
            except (SMBError, StaleHandle) as exc:
                # The server kept nothing of it (restarted, or the durable timeout
                # passed): every later use fails, nothing is guessed.
                log.warning("%s could not be reopened: %s", handle.name, exc)
                handle.mark_stale()
                self.stats.lost_handles += 1

    # ------------------------------------------------------------------ watching
    async def _watch(self) -> None:
        last_echo = trio.current_time()
        while True:
            await trio.sleep(0.5)
            tree = self.tree
            if tree is None or self._closing:
                return
            conn = tree.conn
            if conn.closed:
                if self._recovery is None and self._still_refused() is None:
                    # Nobody is waiting on it, but durable opens only last so long:
                    # bring it back now.
                    self._start_recovery(conn)
                continue
            now = trio.current_time()
            transport = conn.transport
            silent = now - transport.heard()
            if conn.in_flight and silent > transport.dead_after:
                conn.abandon(f"nothing heard from {transport.peer} for {silent:.1f} s")
            elif conn.in_flight and silent > PROBE_AFTER:
                transport.probe()
            elif (not conn.in_flight
                  # SMB's own silence: QUIC's keep-alive ACKs do not prove smbd alive.
                  and now - transport.last_received >= self.opts.echo_interval
                  and now - last_echo >= self.opts.echo_interval):
                last_echo = now
                self.nursery.start_soon(self._echo, conn)

    async def _echo(self, conn: Connection) -> None:
        """ECHO on an idle connection (3.2.4.20); no answer in time means it is dead."""
        assert self.tree is not None
        with trio.move_on_after(ECHO_WITHIN) as scope:
            try:
                await conn.echo(self.tree.session.keys)
            except QuicfsError:
                return  # failed already: the watch sees it closed
        if scope.cancelled_caught:
            conn.abandon(f"{conn.transport.peer} did not answer ECHO in {ECHO_WITHIN:g} s")

    # ------------------------------------------------------------------ closing
    def closing(self) -> None:
        """The share's user is going away (the mount was unmounted, or told to stop):
        calls waiting for a reconnect fail now with ConnectionLost, and none starts
        again. A hard mount waits for its server, but not after its mount is gone."""
        self._closing = True
        if self.tree is not None:
            self.tree.recover = None
        recovery = self._recovery
        if recovery is not None and not recovery.done.is_set():
            recovery.error = ConnectionLost("the share is being closed")
            recovery.done.set()

    async def abandon_after(self, grace: float) -> None:
        """After ``closing()``: ``grace`` seconds later the requests still unanswered
        fail too; a server that is gone answers none of them (a QUIC connection would
        only find out at its idle timeout)."""
        await trio.sleep(grace)
        if self.tree is not None and not self.tree.conn.closed:
            self.tree.conn.abandon("the share is being closed")

    async def aclose(self) -> None:
        """Disconnect the tree and log off (briefly; a dead server is not waited for)."""
        self._closing = True
        tree = self.tree
        if tree is None:
            return
        tree.recover = None
        with trio.CancelScope(shield=True):
            if not tree.conn.closed:
                try:
                    with trio.move_on_after(2):
                        await tree.disconnect()
                        await tree.session.logoff()
                except (QuicfsError, OSError):
                    pass
            for conn in list(self._scopes):
                self._drop(conn)
                # Closed here, not only by the connection's task: the nursery that runs
                # the QUIC worker is cancelled next, and a close needs the worker.
                await _close(conn.transport)


async def _close(transport: object) -> None:
    """Close a transport, shielded but bounded: a peer that is gone does not answer."""
    with trio.CancelScope(shield=True), trio.move_on_after(3):
        try:
            await transport.aclose()  # type: ignore[attr-defined]
        except (QuicfsError, OSError, trio.BrokenResourceError):
            pass


__all__ = ["Link", "LinkStats"]
