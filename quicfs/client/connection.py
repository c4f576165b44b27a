"""The SMB2 connection: one transport, many requests in flight.

Theory of operation. A :class:`Connection` owns two tasks in its nursery: the *sender*,
which writes queued messages to the transport one after the other (so a cancelled caller
never cuts a message in half), and the *receiver*, which reads messages, decrypts them,
splits compounds, checks signatures and wakes the task waiting for each MessageId. A caller
of :meth:`Connection.request` takes credits and MessageIds from the :class:`CreditWindow`
(waiting while short, MS-SMB2 3.2.4.1.5), builds, signs or encrypts its message, queues it,
and waits. An interim STATUS_PENDING response (3.2.5.1.5) records the AsyncId; from then
on the server may hold the request as long as it likes, so a signal to the program the
call is for ends the wait (client/interrupt.py), as for a lost server. When the transport
dies every waiter is failed at once with the same error; when a caller is cancelled (or
interrupted) its entry stays in the table, marked abandoned, so the late response is
recognised and its credits are not lost.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from quicfs.client.interrupt import wait_interruptibly
from quicfs.client.nursery import open_nursery
from quicfs.errors import (
    ConnectionLost,
    Interrupted,
    MalformedError,
    ProtocolError,
    QuicfsError,
    SecurityError,
    SMBError,
)
from quicfs.smb2 import crypto
from quicfs.smb2.constants import (
    Capabilities,
    Cipher,
    Command,
    Dialect,
    HashAlgorithm,
    HeaderFlags,
    SecurityMode,
    SigningAlgorithm,
    TransportCapabilityFlags,
)
from quicfs.smb2.credits import CreditWindow, credit_charge
from quicfs.smb2.header import Header, split_compound
from quicfs.smb2.negotiate import (
    EncryptionContext,
    NegotiateContext,
    NegotiateRequest,
    NegotiateResponse,
    NetnameContext,
    PreauthIntegrityContext,
    SigningContext,
    TransportCapabilitiesContext,
)
from quicfs.smb2.status import Status, is_error
from quicfs.smb2.wire import pad8
from quicfs.transport.base import MessageTransport

log = logging.getLogger("quicfs.connection")

#: MessageId of an unsolicited oplock/lease break notification (3.2.5.19).
BREAK_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF

#: MS-SMB2 3.2.5.2: a client SHOULD disconnect when MaxTransactSize, MaxReadSize or
#: MaxWriteSize is below this (Windows does; with 0, reads and writes of 0 bytes
#: would go round for ever).
MIN_IO_SIZE = 65536

#: Ciphers and signing algorithms we offer, most preferred first.
CIPHERS = (Cipher.AES_128_GCM, Cipher.AES_256_GCM, Cipher.AES_128_CCM, Cipher.AES_256_CCM)
SIGNING_ALGORITHMS = (
    SigningAlgorithm.AES_GMAC,
    SigningAlgorithm.AES_CMAC,
    SigningAlgorithm.HMAC_SHA256,
)


class Request(Protocol):
    command: Any

    def pack(self) -> bytes: ...


@dataclass(slots=True)
class Reply:
    """One response: its header and the whole message (body at offset 64)."""

    header: Header
    message: memoryview

    @property
    def status(self) -> int:
        return self.header.status


#: Called from the receive task with each oplock or lease break (3.2.5.19) and whether
#: it was signed or sealed; it must not wait (leases.py files the break and returns).
BreakHandler = Callable[[Reply, bool], None]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What a connection needs of a session to send and check its messages: its id, and
    the keys SESSION_SETUP derived (MS-SMB2 3.2.5.3.1). The Session makes a new one when
    they change; the connection never looks into the Session itself. Without a signing
    key (during SESSION_SETUP) nothing is signed."""

    session_id: int
    signing_algorithm: SigningAlgorithm = SigningAlgorithm.AES_CMAC
    signing_key: bytes = b""
    cipher: Cipher | None = None
    encryption_key: bytes = b""
    decryption_key: bytes = b""

    @property
    def signs(self) -> bool:
        return bool(self.signing_key)


@dataclass(slots=True, eq=False)
class _Pending:
    message_id: int
    command: int
    keys: SessionKeys | None
    signed: bool
    encrypted: bool
    done: trio.Event = field(default_factory=trio.Event)
    reply: Reply | None = None
    error: BaseException | None = None
    async_id: int | None = None
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class NegotiatedParameters:
    dialect: int
    server_guid: uuid.UUID
    security_mode: SecurityMode
    capabilities: Capabilities
    max_read_size: int
    max_write_size: int
    max_transact_size: int
    cipher: Cipher | None
    signing_algorithm: SigningAlgorithm
    #: The server echoed SMB2_ACCEPT_TRANSPORT_LEVEL_SECURITY (2.2.3.1.5): over QUIC, SMB
    #: encryption is then left to the transport.
    transport_security: bool
    gss_token: bytes


class Connection:
    def __init__(
        self,
        transport: MessageTransport,
        *,
        server_name: str,
        client_guid: uuid.UUID | None = None,
        offer_transport_security: bool = False,
        on_break: BreakHandler | None = None,
    ) -> None:
        self.transport = transport
        self.server_name = server_name
        self.client_guid = client_guid or uuid.uuid4()
        self.offer_transport_security = offer_transport_security
        self.params: NegotiatedParameters | None = None
        self.preauth = crypto.PreauthIntegrity()
        #: The keys of each session established on it, by SessionId: the receiver
        #: decrypts and verifies with them (3.2.5.1.1.1, 3.2.5.1.3).
        self._sessions: dict[int, SessionKeys] = {}
        #: Where breaks go; ``authenticated`` is False for a break that was neither
        #: signed nor encrypted (3.2.5.19 allows it). Without one they are dropped.
        self._break_handler = on_break
        self._credits = CreditWindow(initial=1)
        self._credit_changed = trio.Event()
        self._pending: dict[int, _Pending] = {}
        self._dead: BaseException | None = None
        self._send_in, self._send_out = trio.open_memory_channel[bytes | bytearray](32)
        #: Messages handed to the sender task and not yet sent: while there are any, new
        #: ones queue behind them, so messages leave in the order they were made.
        self._queued = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        #: SMB2 messages sent (each member of a compound counts), and the sends a caller
        #: waited on (a compound chain counts once): their ratio to round trips shows what
        #: is serialised (issue 22). A CANCEL is a message nobody waits on.
        self.messages_sent = 0
        self.sends = 0

    # ------------------------------------------------------------------ lifetime
    @property
    def closed(self) -> bool:
        return self._dead is not None

    @property
    def failure(self) -> BaseException | None:
        """Why the connection ended, once it has."""
        return self._dead

    def abandon(self, reason: str) -> None:
        """Declare the connection dead (the server went silent): every waiter fails now
        with ConnectionLost(reason), and nothing more is sent on it."""
        self._fail(ConnectionLost(reason))

    async def _sender(self) -> None:
        try:
            async for message in self._send_out:
                await self.transport.send_message(message)
                self.bytes_sent += len(message)
                self._queued -= 1
        except QuicfsError as exc:
            self._fail(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(ConnectionLost(f"connection to {self.transport.peer} lost: {exc}"))

    async def _receiver(self) -> None:
        try:
            while True:
                frame = await self.transport.receive_message()
                self.bytes_received += len(frame)
                self._on_frame(frame)
        except QuicfsError as exc:
            self._fail(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(ConnectionLost(f"connection to {self.transport.peer} lost: {exc}"))

    def _fail(self, exc: BaseException) -> None:
        """Fail every waiter at once with one error and refuse new requests."""
        if self._dead is None:
            self._dead = exc
            log.debug("connection to %s failed: %s", self.transport.peer, exc)
        for pending in self._pending.values():
            # (An interim may have set ``done`` with neither a reply nor an error.)
            if pending.reply is None and pending.error is None:
                pending.error = self._dead
                pending.done.set()
        self._pending.clear()
        self._wake_credit_waiters()
        self._send_in.close()

    def _wake_credit_waiters(self) -> None:
        # Waiters hold the old event; a fresh one serves the next round.
        self._credit_changed.set()
        self._credit_changed = trio.Event()

    async def aclose(self) -> None:
        self._fail(ConnectionLost("connection closed"))
        with trio.CancelScope(shield=True):
            try:
                await self.transport.aclose()
            except (QuicfsError, OSError, trio.BrokenResourceError):
                pass

    def add_session(self, keys: SessionKeys) -> None:
        """A session is established (3.2.5.3.1): answers for it are checked with ``keys``."""
        self._sessions[keys.session_id] = keys

    def remove_session(self, session_id: int) -> None:
        """The session logged off: it leaves the SessionTable (3.2.5.4)."""
        self._sessions.pop(session_id, None)

    # ------------------------------------------------------------------ negotiate
    async def negotiate(self) -> NegotiatedParameters:
        """3.2.4.2.2.2: offer SMB 3.1.1 with its contexts and check what comes back."""
        contexts: list[NegotiateContext] = [
            PreauthIntegrityContext((HashAlgorithm.SHA_512,), os.urandom(32)),
            EncryptionContext(tuple(CIPHERS)),
            SigningContext(tuple(SIGNING_ALGORITHMS)),
            NetnameContext(self.server_name),
        ]
        if self.offer_transport_security:
            contexts.append(TransportCapabilitiesContext())
        req = NegotiateRequest(
            dialects=(Dialect.SMB_3_1_1,),
            security_mode=SecurityMode.SIGNING_ENABLED,
            # DIRECTORY_LEASING: a server that grants directory leases says so in its
            # answer (3.3.5.4), and only then are they asked for (fs/dirleases.py).
            capabilities=Capabilities.LARGE_MTU | Capabilities.LEASING | Capabilities.ENCRYPTION
            | Capabilities.DIRECTORY_LEASING,
            client_guid=self.client_guid,
            contexts=tuple(contexts),
        )
        message, reply = await self._negotiate_exchange(req)
        if reply.status != Status.SUCCESS:
            raise SMBError(reply.status, f"server refused NEGOTIATE: {reply.header.status:#x}")
        resp = NegotiateResponse.unpack(reply.message)
        if resp.dialect != Dialect.SMB_3_1_1:
            raise ProtocolError(
                f"server chose dialect {resp.dialect:#06x}; quicfs speaks SMB 3.1.1 only"
            )
        for what, size in (("MaxTransactSize", resp.max_transact_size),
                           ("MaxReadSize", resp.max_read_size),
                           ("MaxWriteSize", resp.max_write_size)):
            if size < MIN_IO_SIZE:
                raise ProtocolError(f"server offered {what} {size}, below the {MIN_IO_SIZE} "
                                    "bytes MS-SMB2 3.2.5.2 asks for")
        preauth = resp.context(PreauthIntegrityContext)
        if not isinstance(preauth, PreauthIntegrityContext) or preauth.hash_algorithms != (
            HashAlgorithm.SHA_512,
        ):
            raise ProtocolError("server sent no SHA-512 preauth integrity context (3.1.1)")
        self.preauth.update(message)
        self.preauth.update(bytes(reply.message))
        cipher: Cipher | None = None
        enc = resp.context(EncryptionContext)
        if isinstance(enc, EncryptionContext) and enc.ciphers and enc.ciphers[0] != 0:
            if len(enc.ciphers) != 1 or enc.ciphers[0] not in CIPHERS:
                raise ProtocolError(f"server chose a cipher we did not offer: {enc.ciphers}")
            cipher = Cipher(enc.ciphers[0])
        signing = SigningAlgorithm.AES_CMAC  # 3.2.5.2: absent context means AES-CMAC
        sig = resp.context(SigningContext)
        if isinstance(sig, SigningContext) and sig.algorithms:
            if len(sig.algorithms) != 1 or sig.algorithms[0] not in SIGNING_ALGORITHMS:
                raise ProtocolError(f"server chose a signing algorithm we did not offer: "
                                    f"{sig.algorithms}")
            signing = SigningAlgorithm(sig.algorithms[0])
        transport_security = False
        tc = resp.context(TransportCapabilitiesContext)
        if self.offer_transport_security and isinstance(tc, TransportCapabilitiesContext):
            transport_security = bool(
                tc.flags & TransportCapabilityFlags.ACCEPT_TRANSPORT_LEVEL_SECURITY
            )
        self.params = NegotiatedParameters(
            dialect=resp.dialect,
            server_guid=resp.server_guid,
            security_mode=resp.security_mode,
            capabilities=resp.capabilities,
            max_read_size=resp.max_read_size,
            max_write_size=resp.max_write_size,
            max_transact_size=resp.max_transact_size,
            cipher=cipher,
            signing_algorithm=signing,
            transport_security=transport_security,
            gss_token=resp.security_buffer,
        )
        log.debug("negotiated %s", self.params)
        return self.params

    async def _negotiate_exchange(self, req: NegotiateRequest) -> tuple[bytes, Reply]:
        # MS-SMB2 3.2.4.2.2.2: NEGOTIATE goes with CreditCharge 0 and asks for credits.
        header = Header(command=Command.NEGOTIATE, message_id=self._credits.take(1),
                        credit_charge=0, credits=self._credits.request_for(1))
        message = header.pack() + req.pack()
        pending = _Pending(header.message_id, Command.NEGOTIATE, None, False, False)
        reply = await self._exchange(pending, message)
        return message, reply

    # ------------------------------------------------------------------ requests
    async def _take_credits(self, charge: int) -> int:
        while not self._credits.can_take(charge):
            self._check_alive()
            if not self._pending:
                # Nothing in flight will ever grant more: the server starved us.
                exc = ProtocolError(
                    f"server granted too few credits ({self._credits.available} for a request "
                    f"needing {charge})"
                )
                self._fail(exc)
                raise exc
            await self._credit_changed.wait()
        return self._credits.take(charge)

    def _check_alive(self) -> None:
        if self._dead is not None:
            if isinstance(self._dead, QuicfsError):
                raise copy_error(self._dead) from self._dead
            raise ConnectionLost(str(self._dead)) from self._dead

    async def request(
        self,
        req: Request,
        *,
        keys: SessionKeys | None = None,
        tree_id: int = 0,
        encrypt: bool = False,
        allowed: Sequence[int] = (),
        replay: bool = False,
    ) -> Reply:
        """Send one request and wait for its final response.

        An error status raises :class:`SMBError` unless it is in ``allowed``.
        """
        [reply] = await self.send_chain([req], keys=keys, tree_id=tree_id,
                                        encrypt=encrypt, replay=replay)
        if is_error(reply.status) and reply.status not in allowed:
            raise SMBError(reply.status)
        return reply

    async def send_chain(
        self,
        reqs: Sequence[Request],
        *,
        keys: SessionKeys | None = None,
        tree_id: int = 0,
        encrypt: bool = False,
        related: bool = False,
        replay: bool = False,
        message_hook: Any = None,
    ) -> list[Reply]:
        """Send requests as one compound (3.2.4.1.4) and wait for all their responses.

        With ``related`` the second and later requests act on the first's FileId. Replies
        come back in order; their statuses are not checked here.
        """
        self._check_alive()
        charges = [credit_charge(getattr(r, "payload_size", 0)) for r in reqs]
        total = sum(charges)
        first_mid = await self._take_credits(total)
        sign = keys is not None and keys.signs and not encrypt
        session_id = keys.session_id if keys is not None else 0
        chain = bytearray()
        pendings: list[_Pending] = []
        mid = first_mid
        for i, (req, charge) in enumerate(zip(reqs, charges, strict=True)):
            # 2.2.1.2 SMB2_FLAGS_REPLAY_OPERATION: a request sent again after a reconnect
            # says so, and the server can tell a replayed CREATE from a new one.
            flags = HeaderFlags.REPLAY_OPERATION if replay else HeaderFlags.NONE
            if related and i > 0:
                flags |= HeaderFlags.RELATED_OPERATIONS
            ask = self._credits.request_for(charge) if i == len(reqs) - 1 else charge
            header = Header(command=req.command, message_id=mid, credit_charge=charge,
                            credits=ask, flags=flags, tree_id=tree_id, session_id=session_id)
            member = bytearray(header.pack())
            member += req.pack()
            if i != len(reqs) - 1:
                member += bytes(pad8(len(member)))
                member[20:24] = len(member).to_bytes(4, "little")
            if sign:
                assert keys is not None
                crypto.sign_message(keys.signing_algorithm, keys.signing_key, member)
            if message_hook is not None:
                message_hook(bytes(member))
            if len(reqs) == 1:
                chain = member  # the common case: no copy into a chain
            else:
                chain += member
            pendings.append(_Pending(mid, int(req.command), keys, sign, encrypt))
            mid += charge
        data: bytes | bytearray = chain
        if encrypt:
            assert keys is not None and keys.cipher is not None
            data = crypto.encrypt_message(keys.cipher, keys.encryption_key, session_id,
                                          bytes(chain))
        for p in pendings:
            self._pending[p.message_id] = p
        try:
            await self._send(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._check_alive()
            raise
        self.sends += 1
        self.messages_sent += len(reqs)
        return [await self._wait(p) for p in pendings]

    async def _exchange(self, pending: _Pending, message: bytes | bytearray) -> Reply:
        self._pending[pending.message_id] = pending
        await self._send(message)
        self.sends += 1
        self.messages_sent += 1
        return await self._wait(pending)

    async def _send(self, message: bytes | bytearray) -> None:
        """Send ``message`` from this task when the transport takes it at once and nothing
        is queued before it; otherwise queue it for the sender task. The direct way saves
        two passes through trio's scheduler on every request. The caller then waits for
        the reply, which is its checkpoint."""
        if self._queued == 0 and self._dead is None and self.transport.try_send_message(message):
            self.bytes_sent += len(message)
            return
        self._queued += 1
        try:
            await self._send_in.send(message)
        except BaseException:
            self._queued -= 1  # not queued
            raise

    async def _wait(self, pending: _Pending) -> Reply:
        try:
            await pending.done.wait()
            while pending.reply is None and pending.error is None:
                # An interim response woke us (3.2.5.1.5): the server may now hold the
                # request without end, so a signal to the caller ends the wait.
                pending.done = trio.Event()
                await wait_interruptibly(pending.done.wait)
        except (trio.Cancelled, Interrupted):
            # Keep the entry: the server will still answer, and that answer must not be
            # taken for a stray MessageId. Ask it to stop if it went async (3.2.4.24).
            pending.abandoned = True
            if pending.async_id is not None and not self.closed:
                self._send_cancel(pending)
            raise
        if pending.error is not None:
            if isinstance(pending.error, QuicfsError):
                raise copy_error(pending.error) from pending.error
            raise ConnectionLost(str(pending.error)) from pending.error
        assert pending.reply is not None
        return pending.reply

    def _send_cancel(self, pending: _Pending) -> None:
        from quicfs.smb2.control import CancelRequest

        header = Header(command=Command.CANCEL, message_id=pending.message_id,
                        async_id=pending.async_id,
                        session_id=pending.keys.session_id if pending.keys else 0)
        message = bytearray(header.pack() + CancelRequest().pack())
        if pending.signed and pending.keys is not None:
            crypto.sign_message(pending.keys.signing_algorithm, pending.keys.signing_key,
                                message)
        if self._queued == 0 and self._dead is None \
                and self.transport.try_send_message(message):
            self.messages_sent += 1
            return
        try:
            self._send_in.send_nowait(bytes(message))
            self._queued += 1
            self.messages_sent += 1
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # ------------------------------------------------------------------ receiving
    def _on_frame(self, frame: bytearray) -> None:
        encrypted = crypto.is_encrypted(frame)
        if encrypted:
            data = self._decrypt(frame)
        else:
            data = frame
        for member in split_compound(data):
            self._on_message(member, encrypted)

    def _decrypt(self, frame: bytearray) -> bytes:
        from quicfs.smb2.transform import TransformHeader

        th = TransformHeader.unpack(frame)
        keys = self._sessions.get(th.session_id)
        if keys is None or keys.cipher is None:
            raise ProtocolError(f"encrypted message for unknown session {th.session_id:#x}")
        _, plaintext = crypto.decrypt_message(keys.cipher, keys.decryption_key, frame)
        return plaintext

    def _on_message(self, msg: memoryview, encrypted: bool) -> None:
        header = Header.unpack(msg)
        if not header.is_response:
            raise ProtocolError(f"server sent a request ({header.command!r})")
        if header.message_id == BREAK_MESSAGE_ID:
            if header.command != Command.OPLOCK_BREAK:
                raise ProtocolError(f"unsolicited {header.command!r} message")
            self._on_break(Reply(header, msg), encrypted)
            return
        pending = self._pending.get(header.message_id)
        if pending is None:
            raise ProtocolError(f"response for unknown MessageId {header.message_id}")
        if header.command != pending.command:
            # 3.2.5.1.8: never taken as the answer; the stream cannot be trusted after it.
            raise ProtocolError(
                f"server answered {command_name(pending.command)} (MessageId "
                f"{header.message_id}) with a {command_name(header.command)} response")
        self._credits.grant(header.credits)
        self._wake_credit_waiters()
        if header.status == Status.PENDING and header.is_async:
            if pending.async_id is None:  # the first interim; more change nothing
                pending.async_id = header.async_id
                if pending.abandoned:
                    self._send_cancel(pending)
                else:
                    pending.done.set()
            return
        del self._pending[header.message_id]
        try:
            self._check_security(pending, header, msg, encrypted)
        except SecurityError as exc:
            pending.error = exc
        else:
            pending.reply = Reply(header, msg)
        pending.done.set()

    def _check_security(self, pending: _Pending, header: Header, msg: memoryview,
                        encrypted: bool) -> None:
        """A response whose signature or encryption is not what we asked for is never
        taken as data (3.2.5.1.3)."""
        if pending.encrypted and not encrypted:
            raise SecurityError(f"{command_name(header.command)} response was not encrypted")
        if encrypted:
            return
        keys = self._sessions.get(header.session_id)
        if header.is_signed and keys is not None and keys.signs:
            crypto.verify(keys.signing_algorithm, keys.signing_key, msg)
        elif pending.signed:
            raise SecurityError(f"{command_name(header.command)} response was not signed")

    def _on_break(self, reply: Reply, encrypted: bool) -> None:
        keys = self._sessions.get(reply.header.session_id)
        authenticated = encrypted
        if not encrypted and keys is not None and keys.signs:
            if not reply.header.is_signed:
                raise SecurityError("unsigned oplock break notification")
            crypto.verify(keys.signing_algorithm, keys.signing_key, reply.message)
            authenticated = True
        # Otherwise SessionId 0, unsigned, as 3.2.5.19 allows: anyone on the path could
        # have sent it, and the handler lets it make us more careful only.
        if self._break_handler is not None:
            self._break_handler(reply, authenticated)

    async def echo(self, keys: SessionKeys | None = None) -> None:
        """ECHO (3.2.4.20): is the server still there?"""
        from quicfs.smb2.control import EchoRequest

        await self.request(EchoRequest(), keys=keys)

    # ------------------------------------------------------------------ info
    @property
    def credits_available(self) -> int:
        return self._credits.available

    @property
    def in_flight(self) -> int:
        return len(self._pending)


_E = TypeVar("_E", bound=BaseException)


def copy_error(error: _E) -> _E:
    """``error`` as a new object, for one more task to raise: one object raised in
    several tasks would gather all their tracebacks. It keeps its type and attributes.
    It is not rebuilt through ``__init__``, whose signature a subclass may change
    (SMBError takes a status, not a message)."""
    cls = type(error)
    copy = cls.__new__(cls, *error.args)
    copy.__dict__.update(error.__dict__)
    return copy


def command_name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"command {command:#x}"


@asynccontextmanager
async def open_connection(
    transport: MessageTransport, *, server_name: str, client_guid: uuid.UUID | None = None,
    negotiate_within: float = 30.0, on_break: BreakHandler | None = None,
) -> AsyncIterator[Connection]:
    """Run a connection over ``transport``: negotiated on entry (a server that accepts the
    transport and then says nothing fails after ``negotiate_within`` seconds), closed on
    exit. Its oplock and lease breaks go to ``on_break`` from the start."""
    conn = Connection(
        transport,
        server_name=server_name,
        client_guid=client_guid,
        # Offered over QUIC only, and only when the server's certificate was verified:
        # never under `insecure` (design.md, MS-SMB2 2.2.3.1.5).
        offer_transport_security=transport.kind == "quic"
        and bool(getattr(transport, "verified", False)),
        on_break=on_break,
    )
    async with open_nursery() as nursery:
        nursery.start_soon(conn._receiver)
        nursery.start_soon(conn._sender)
        try:
            try:
                with trio.fail_after(negotiate_within):
                    await conn.negotiate()
            except trio.TooSlowError:
                raise ConnectionLost(
                    f"{transport.peer} did not answer NEGOTIATE within {negotiate_within:g} s"
                ) from None
            yield conn
        finally:
            await conn.aclose()
            nursery.cancel_scope.cancel()


__all__ = ["BreakHandler", "Connection", "MalformedError", "NegotiatedParameters", "Reply",
           "SessionKeys", "command_name", "copy_error", "open_connection"]
