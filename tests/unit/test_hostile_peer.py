"""The server is not trusted: a scripted peer sends what no honest server would.

Samba cannot be made to misbehave, so these drive a real Connection over an in-memory
stream against a peer that answers with crafted bytes.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
import trio
import trio.testing

from quicfs.client.connection import SessionKeys, open_connection
from quicfs.client.nursery import open_nursery
from quicfs.errors import ConnectionLost, MalformedError, ProtocolError, QuicfsError
from quicfs.smb2.constants import Cipher, Command, Dialect, HeaderFlags, SigningAlgorithm
from quicfs.smb2.control import EchoRequest
from quicfs.smb2.header import Header
from quicfs.smb2.negotiate import (
    EncryptionContext,
    PreauthIntegrityContext,
    SigningContext,
    pack_contexts,
)
from quicfs.transport.framing import FramedStream


def negotiate_body(dialect: int = Dialect.SMB_3_1_1, *, transact: int = 1 << 20,
                   read: int = 1 << 20, write: int = 1 << 20) -> bytes:
    ctx = pack_contexts([PreauthIntegrityContext(salt=b"s" * 32),
                         EncryptionContext((Cipher.AES_128_GCM,)),
                         SigningContext((SigningAlgorithm.AES_CMAC,))])
    ctx_off = 64 + 64
    return struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, 3, bytes(16), 0x4, transact,
                       read, write, 0, 0, 0, 0, ctx_off) + ctx


def response(command: int, mid: int, body: bytes, *, credits: int = 10, status: int = 0,
             flags: HeaderFlags = HeaderFlags.SERVER_TO_REDIR) -> bytes:
    return Header(command=command, message_id=mid, credits=credits, status=status,
                  flags=flags).pack() + body


async def run_against(peer_script, client_script, *, negotiate: bytes | None = None,
                      on_break=None):
    """Run ``client_script(conn)`` against a peer that answers NEGOTIATE (with
    ``negotiate``, or an honest body) and then runs ``peer_script(peer,
    first_request_header)``. The connection's breaks go to ``on_break``."""
    a, b = trio.testing.memory_stream_pair()
    client_side = FramedStream(a, kind="tcp", peer="test")
    server_side = FramedStream(b, kind="tcp", peer="client")

    async def peer():
        msg = await server_side.receive_message()
        h = Header.unpack(msg)
        await server_side.send_message(response(Command.NEGOTIATE, h.message_id,
                                                negotiate or negotiate_body()))
        try:
            msg = await server_side.receive_message()
        except ConnectionLost:
            return
        # An encrypted request has no plain header; its MessageId is the next one, 1.
        h = Header.unpack(msg) if msg[:4] == b"\xfeSMB" else Header(command=0, message_id=1)
        await peer_script(server_side, h, b)

    async with open_nursery() as n:  # the client's error itself, not in a group
        n.start_soon(peer)
        with trio.fail_after(5):
            async with open_connection(client_side, server_name="test",
                                       on_break=on_break) as conn:
                await client_script(conn)
        n.cancel_scope.cancel()


#: What a Session hands its Connection after SESSION_SETUP, with keys made up: no handshake.
KEYS = SessionKeys(0x77, SigningAlgorithm.AES_CMAC, b"k" * 16, Cipher.AES_128_GCM,
                   b"e" * 16, b"e" * 16)


ECHO_OK = struct.pack("<HH", 4, 0)


async def test_honest_echo():
    async def peer(s, h, raw):
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK))

    async def client(conn):
        reply = await conn.request(EchoRequest())
        assert reply.status == 0

    await run_against(peer, client)


async def test_unknown_message_id_fails_the_connection():
    async def peer(s, h, raw):
        await s.send_message(response(Command.ECHO, h.message_id + 1000, ECHO_OK))

    async def client(conn):
        with pytest.raises(ProtocolError, match="unknown MessageId"):
            await conn.request(EchoRequest())
        assert conn.closed

    await run_against(peer, client)


async def test_zero_credit_grant_is_refused_not_hung():
    async def peer(s, h, raw):
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK, credits=0))

    async def client(conn):
        # The NEGOTIATE grant (10) is used up first, then the server stops granting.
        with pytest.raises(ProtocolError, match="too few credits"):
            for _ in range(20):
                await conn.request(EchoRequest())

    async def peer_loop(s, h, raw):
        while True:
            await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK, credits=0))
            try:
                h = Header.unpack(await s.receive_message())
            except ConnectionLost:
                return

    await run_against(peer_loop, client)


async def test_huge_credit_grant_is_capped():
    async def peer(s, h, raw):
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK, credits=65535))

    async def client(conn):
        await conn.request(EchoRequest())
        assert conn.credits_available <= 8192

    await run_against(peer, client)


async def test_oversized_frame_fails_the_connection():
    async def peer(s, h, raw):
        await raw.send_all(b"\x00\xff\xff\xff" + b"x" * 100)

    async def client(conn):
        with pytest.raises(QuicfsError):
            await conn.request(EchoRequest())
        assert conn.closed

    await run_against(peer, client)


async def test_truncated_response_fails_the_request_cleanly():
    async def peer(s, h, raw):
        # A header and nothing else: the ECHO body is missing.
        await s.send_message(response(Command.ECHO, h.message_id, b""))

    async def client(conn):
        reply = await conn.request(EchoRequest())
        from quicfs.smb2.control import EchoResponse

        with pytest.raises(MalformedError):
            EchoResponse.unpack(reply.message)

    await run_against(peer, client)


async def test_garbage_instead_of_a_header_fails_the_connection():
    async def peer(s, h, raw):
        await s.send_message(b"\xfeSMB" + b"\x00" * 10)

    async def client(conn):
        with pytest.raises(MalformedError):
            await conn.request(EchoRequest())

    await run_against(peer, client)


async def test_peer_hangs_up_fails_all_waiters_at_once():
    async def peer(s, h, raw):
        await raw.aclose()

    async def client(conn):
        results = []

        async def one():
            try:
                await conn.request(EchoRequest())
            except ConnectionLost as exc:
                results.append(exc)

        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(one)
        assert len(results) == 5

    await run_against(peer, client)


async def test_unsigned_response_to_signed_request_is_refused():
    """A response that should be signed and is not is never taken as data."""
    from quicfs.errors import SecurityError


    async def peer(s, h, raw):
        assert h.is_signed
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK))

    async def client(conn):
        conn.add_session(KEYS)
        with pytest.raises(SecurityError, match="not signed"):
            await conn.request(EchoRequest(), keys=KEYS)

    await run_against(peer, client)


async def test_tampered_signed_response_is_refused():
    from quicfs.errors import SecurityError
    from quicfs.smb2 import crypto


    async def peer(s, h, raw):
        msg = bytearray(Header(command=Command.ECHO, message_id=h.message_id, credits=5,
                               flags=HeaderFlags.SERVER_TO_REDIR, session_id=0x77).pack()
                        + ECHO_OK)
        crypto.sign_message(SigningAlgorithm.AES_CMAC, b"k" * 16, msg)
        msg[-1] ^= 1
        await s.send_message(msg)

    async def client(conn):
        conn.add_session(KEYS)
        with pytest.raises(SecurityError, match="bad signature on ECHO"):
            await conn.request(EchoRequest(), keys=KEYS)

    await run_against(peer, client)


async def test_undecryptable_response_is_never_data():
    """An encrypted answer that fails its tag ends the connection; nothing reaches the
    caller as data (MS-SMB2 3.2.5.1.1.1)."""
    from quicfs.errors import SecurityError
    from quicfs.smb2 import crypto

    key = KEYS.encryption_key


    async def peer(s, h, raw):
        plain = Header(command=Command.ECHO, message_id=h.message_id, credits=5,
                       flags=HeaderFlags.SERVER_TO_REDIR, session_id=0x77).pack() + ECHO_OK
        sealed = bytearray(crypto.encrypt_message(Cipher.AES_128_GCM, key, 0x77, plain))
        sealed[-1] ^= 0x01
        await s.send_message(sealed)

    async def client(conn):
        conn.add_session(KEYS)
        with pytest.raises(SecurityError, match="decryption failed"):
            await conn.request(EchoRequest(), keys=KEYS, encrypt=True)
        assert conn.closed

    await run_against(peer, client)


async def test_plaintext_answer_to_encrypted_request_is_refused():
    from quicfs.errors import SecurityError


    async def peer(s, h, raw):
        # The request came encrypted, so it is not a plain header at all.
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK))

    async def client(conn):
        conn.add_session(KEYS)
        with pytest.raises(SecurityError, match="not encrypted"):
            await conn.request(EchoRequest(), keys=KEYS, encrypt=True)

    await run_against(peer, client)


async def test_transport_security_accepted_only_when_offered():
    """A server that echoes SMB2_ACCEPT_TRANSPORT_LEVEL_SECURITY (MS-SMB2 2.2.3.1.5) is
    taken at its word only if we offered it (QUIC with a verified certificate)."""
    from quicfs.smb2.negotiate import TransportCapabilitiesContext

    ctx = pack_contexts([PreauthIntegrityContext(salt=b"s" * 32),
                         EncryptionContext((Cipher.AES_128_GCM,)),
                         TransportCapabilitiesContext()])
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, Dialect.SMB_3_1_1, 3, bytes(16), 0x4,
                       1 << 20, 1 << 20, 1 << 20, 0, 0, 0, 0, 128) + ctx
    for offered in (True, False):
        a, b = trio.testing.memory_stream_pair()
        client_side = FramedStream(a, kind="quic", peer="test")
        server_side = FramedStream(b, kind="quic", peer="client")
        client_side.verified = offered  # type: ignore[attr-defined]

        async def peer(side: FramedStream) -> None:
            h = Header.unpack(await side.receive_message())
            await side.send_message(response(Command.NEGOTIATE, h.message_id, body))

        async with trio.open_nursery() as n:
            n.start_soon(peer, server_side)
            async with open_connection(client_side, server_name="t") as conn:
                assert conn.offer_transport_security is offered
                assert conn.params.transport_security is offered


# ---------------------------------------------------------------------- issue 20
# Helpers for the tests below: a share on the connection, opens made without a CREATE,
# and a peer that answers each request the way a script says.

def make_tree(conn, options: str = ""):
    """A tree on ``conn`` with a session that signs nothing (the peer need not sign),
    bound by the mount ``options``."""
    from quicfs.client.session import Session
    from quicfs.client.tree import Tree
    from quicfs.options import parse_options

    session = Session(conn)
    session.keys = SessionKeys(0x77)
    tree = Tree(session, "test", "share", parse_options(options))
    tree.tree_id = 1
    return tree


def leased_open(tree, key: bytes, state, name: str = "f"):
    """An open of ours as a signed CREATE response would have made it, on the tree's
    list as Share puts it there."""
    from quicfs.client.open import Open
    from quicfs.smb2.constants import (
        CreateAction,
        CreateResponseFlags,
        FileAttributes,
        LeaseFlags,
        OplockLevel,
    )
    from quicfs.smb2.create import CreateResponse, LeaseResponseV2
    from quicfs.smb2.fileid import FileId

    created = CreateResponse(
        OplockLevel.LEASE, CreateResponseFlags.NONE, CreateAction.OPENED, 0, 0, 0, 0, 0, 0,
        FileAttributes.DIRECTORY if name.startswith("d") else FileAttributes.NORMAL,
        FileId(len(tree.opens) + 1, 9),
        (LeaseResponseV2(key, state, LeaseFlags.NONE),) if key else ())
    handle = Open(tree, created.file_id, name, created)
    tree.opens.add(handle)
    return handle


def serve(answer):
    """A peer script: every request (its header and bytes) goes to ``answer``, which
    returns the messages to send back; it ends when the client hangs up."""

    async def script(s, h, raw):
        msg = None
        try:
            while True:
                for out in await answer(s, h, msg):
                    await s.send_message(out)
                msg = await s.receive_message()
                h = Header.unpack(msg)
        except ConnectionLost:
            return

    return script


def interim(h: Header, async_id: int = 0x4242) -> bytes:
    """STATUS_PENDING for request ``h``, in the async header form (3.3.4.2)."""
    from quicfs.smb2.status import Status

    return Header(command=h.command, message_id=h.message_id, credits=1,
                  status=Status.PENDING, flags=HeaderFlags.SERVER_TO_REDIR,
                  async_id=async_id).pack() + struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"


def lease_break(key: bytes, current, new, *, ack: bool = True) -> bytes:
    """An unsolicited lease break, SessionId 0 and unsigned, as 3.2.5.19 allows."""
    from quicfs.client.connection import BREAK_MESSAGE_ID
    from quicfs.smb2.constants import LeaseBreakFlags
    from quicfs.smb2.control import LeaseBreakNotification

    flags = LeaseBreakFlags.ACK_REQUIRED if ack else LeaseBreakFlags.NONE
    return Header(command=Command.OPLOCK_BREAK, message_id=BREAK_MESSAGE_ID,
                  flags=HeaderFlags.SERVER_TO_REDIR).pack() + LeaseBreakNotification(
        1, flags, key, current, new).pack()


def count_tasks() -> int:
    def walk(task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


@pytest.mark.parametrize("which", ["transact", "read", "write"])
async def test_tiny_io_sizes_from_negotiate_are_refused(which):
    """A MaxReadSize of 0 made reads of 0 bytes go round for ever (60,000 requests in
    2 s); MS-SMB2 3.2.5.2 says to disconnect below 65536."""
    field = {"transact": "MaxTransactSize", "read": "MaxReadSize", "write": "MaxWriteSize"}

    async def client(conn):
        raise AssertionError("negotiated with a server offering 0-byte I/O")

    with pytest.raises(ProtocolError) as caught:
        await run_against(serve(None), client, negotiate=negotiate_body(**{which: 0}))
    assert str(caught.value) == (f"server offered {field[which]} 0, below the 65536 bytes "
                                 "MS-SMB2 3.2.5.2 asks for")


async def test_response_with_another_command_is_refused():
    """MS-SMB2 3.2.5.1.8: a READ response to an ECHO is no answer to it."""
    async def peer(s, h, raw):
        await s.send_message(response(Command.READ, h.message_id, ECHO_OK))

    async def client(conn):
        with pytest.raises(ProtocolError) as caught:
            await conn.request(EchoRequest())
        assert str(caught.value) == \
            "server answered ECHO (MessageId 1) with a READ response"
        assert conn.closed

    await run_against(peer, client)


async def test_interim_then_hang_up_fails_the_waiter():
    """A waiter an interim woke is still failed when the connection dies."""
    async def peer(s, h, raw):
        await s.send_message(interim(h))
        await trio.sleep(0.1)
        await raw.aclose()

    async def client(conn):
        with pytest.raises(ConnectionLost):
            await conn.request(EchoRequest())

    await run_against(peer, client)


async def test_interim_for_ever_ends_on_a_signal_to_the_caller():
    """Hard mount: STATUS_PENDING and then nothing. A signal to the program the call is
    for ends the wait (EINTR), as for a lost server, and the server is told to CANCEL."""
    import os
    import signal
    import subprocess

    from quicfs.errors import Interrupted
    from quicfs.fs.caller import calling

    seen: list[Header] = []
    pended = trio.Event()

    async def answer(s, h, msg):
        seen.append(h)
        if h.command == Command.ECHO:
            pended.set()
            return [interim(h)]
        return []

    proc = subprocess.Popen(["sleep", "60"])
    os.kill(proc.pid, signal.SIGSTOP)  # signals stay pending while it is stopped
    try:
        async def client(conn):
            async def signal_later():
                await pended.wait()
                await trio.sleep(0.3)  # still waiting: the interim alone ends nothing
                os.kill(proc.pid, signal.SIGUSR1)

            async with trio.open_nursery() as n:
                n.start_soon(signal_later)
                with calling(proc.pid), pytest.raises(Interrupted):
                    await make_tree(conn).request(EchoRequest())
            await trio.sleep(0.1)
            assert [(h.command, h.async_id) for h in seen] == \
                [(Command.ECHO, None), (Command.CANCEL, 0x4242)]

        await run_against(serve(answer), client)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.quiet  # bounds the timeout: 0.5 to 1.5 s
async def test_soft_mount_request_has_a_deadline():
    """Soft mount: a request the server keeps pending fails after timeo (and is
    cancelled on the server), instead of waiting for ever."""
    from quicfs.errors import TimedOut

    seen: list[Header] = []

    async def answer(s, h, msg):
        seen.append(h)
        return [interim(h)] if h.command == Command.ECHO else []

    async def client(conn):
        tree = make_tree(conn, "soft,timeo=0.5")
        start = trio.current_time()
        with pytest.raises(TimedOut) as caught:
            await tree.request(EchoRequest())
        assert 0.5 <= trio.current_time() - start < 1.5
        assert str(caught.value) == "test did not finish ECHO within 0.5 s (soft mount)"
        assert caught.value.errno == 5  # EIO, as soft mounts fail
        await trio.sleep(0.1)
        assert [(h.command, h.async_id) for h in seen] == \
            [(Command.ECHO, None), (Command.CANCEL, 0x4242)]

    await run_against(serve(answer), client)


def directory_page(names: list[str]) -> bytes:
    from quicfs.smb2.constants import FileInfoClass
    from quicfs.smb2.directory import (
        DirectoryEntry,
        QueryDirectoryResponse,
        pack_directory_entries,
    )

    buf = pack_directory_entries([DirectoryEntry(n) for n in names],
                                 FileInfoClass.ID_BOTH_DIRECTORY)
    return QueryDirectoryResponse(memoryview(buf)).pack()


@pytest.mark.parametrize("page", ["entries", "dots"])
async def test_listing_without_end_is_cut_off(page):
    """A server that never says STATUS_NO_MORE_FILES: past max_dir_entries entries (or
    as many KiB of pages that bring none) the listing fails with ENOMEM, and no more is
    asked of the server."""
    from quicfs.client.directory import DirectoryReader
    from quicfs.errors import LimitExceeded

    asked = 0

    async def answer(s, h, msg):
        nonlocal asked
        if h.command != Command.QUERY_DIRECTORY:
            return [response(h.command, h.message_id, ECHO_OK)]
        asked += 1
        names = [".", ".."] if page == "dots" else [f"n{asked}-{i}" for i in range(50)]
        return [response(h.command, h.message_id, directory_page(names))]

    async def client(conn):
        await conn.request(EchoRequest())
        tree = make_tree(conn, "max_dir_entries=1000")
        reader = DirectoryReader(leased_open(tree, b"", 0, name="dir"))
        got = 0
        with pytest.raises(LimitExceeded) as caught:
            while entries := await reader.next_page():
                got += len(entries)
        assert caught.value.errno == 12  # ENOMEM
        if page == "entries":
            assert got == 1000 and asked == 21
            assert str(caught.value) == ("listing of dir passed 1000 entries (1050 entries, "
                                         f"{reader.bytes} bytes; mount option max_dir_entries=)")
        else:
            assert got == 0 and reader.bytes <= 1000 * 1024 + 400
        with pytest.raises(LimitExceeded):
            await reader.next_page()
        assert asked == (21 if page == "entries" else asked)

    await run_against(serve(answer), client)


def break_acks(seen: list[tuple[Header, bytes]]) -> list[tuple[bytes, int]]:
    """(key, state) of each lease break acknowledgement the peer received."""
    return [(bytes(m[72:88]), struct.unpack_from("<I", m, 88)[0]) for h, m in seen
            if h.command == Command.OPLOCK_BREAK]


class Breaks:
    """Break dispatch for a connection opened here, as a Link's is for its own (link.py):
    to the Leases made on the connection once there are some."""

    leases = None

    def __call__(self, reply, authenticated: bool) -> None:
        if self.leases is not None:
            self.leases.notified(reply, authenticated)


class Watched:
    """Leases on a tree with one open of ours under ``key`` (held here: a tree holds its
    opens weakly), and the states the owner's callback was given. The connection's
    ``breaks`` go to them."""

    def __init__(self, conn, breaks: Breaks, key: bytes, state) -> None:
        from quicfs.client.leases import Leases

        self.tree = make_tree(conn)
        self.leases = breaks.leases = Leases(self.tree)
        self.handle = leased_open(self.tree, key, state)
        self.states: list = []
        self._changed = trio.Event()
        self.leases.watch(key, self._broken)

    async def _broken(self, state) -> None:
        self.states.append(state)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, done) -> None:
        while not done(self.states):
            await self._changed.wait()


async def test_unsigned_break_only_ever_takes_rights_away():
    """A break with SessionId 0 is unsigned (MS-SMB2 3.2.5.19): on TCP anyone on the path
    can send one. It may make us give up rights (a flush, a cache drop), never gain any,
    and never get back what an earlier break took."""
    from quicfs.smb2.constants import LeaseState

    R, H, W = LeaseState.READ_CACHING, LeaseState.HANDLE_CACHING, LeaseState.WRITE_CACHING
    key = b"K" * 16
    seen: list[tuple[Header, bytes]] = []
    script = [lease_break(key, R | H, R | H | W),  # would grant Write caching
              lease_break(key, R | H, R),          # takes Handle caching
              lease_break(key, R, R | H | W)]      # would give it all back

    async def answer(s, h, msg):
        if msg is not None:
            seen.append((h, bytes(msg)))
        out = [response(h.command, h.message_id, ECHO_OK)]
        if script:  # the next break once the last is acknowledged
            out.append(script.pop(0))
        return out

    breaks = Breaks()

    async def client(conn):
        w = Watched(conn, breaks, key, R | H)
        async with trio.open_nursery() as n:
            n.start_soon(w.leases.run)
            await conn.request(EchoRequest())
            await w.until(lambda states: len(states) == 3)
            await trio.sleep(0.05)
            n.cancel_scope.cancel()
        assert w.states == [R | H, R, R]
        assert break_acks(seen) == [(key, R | H), (key, R), (key, R)]
        assert w.handle.lease_state == R | H  # (the grant, as the CREATE said)

    await run_against(serve(answer), client, on_break=breaks)


async def test_unsigned_breaks_are_rate_limited(monkeypatch):
    """Breaks a peer sends as fast as we acknowledge them are acted on RATE a second
    once BURST are spent (each may cost a flush and a cache drop)."""
    from quicfs.client import leases as leases_module
    from quicfs.smb2.constants import LeaseState

    monkeypatch.setattr(leases_module, "RATE", 20.0, raising=False)
    monkeypatch.setattr(leases_module, "BURST", 2.0, raising=False)
    key = b"Q" * 16
    rounds = 12
    acked = []
    all_acked = trio.Event()

    async def answer(s, h, msg):
        if h.command == Command.OPLOCK_BREAK:
            acked.append(trio.current_time())
        out = [response(h.command, h.message_id, ECHO_OK)]
        if len(acked) < rounds:
            out.append(lease_break(key, LeaseState.READ_CACHING, LeaseState.NONE))
        else:
            all_acked.set()
        return out

    breaks = Breaks()

    async def client(conn):
        w = Watched(conn, breaks, key, LeaseState.READ_CACHING)
        async with trio.open_nursery() as n:
            n.start_soon(w.leases.run)
            start = trio.current_time()
            await conn.request(EchoRequest())
            await all_acked.wait()
            n.cancel_scope.cancel()
        # 2 at once, then one each 1/20 s: 10 more take at least 0.5 s.
        assert acked[-1] - start >= (rounds - 2) / 20 - 0.02
        assert w.leases.breaks == len(w.states) == rounds

    await run_against(serve(answer), client, on_break=breaks)


async def test_a_flood_of_breaks_is_bounded_and_unknown_keys_get_no_ack():
    """1,000 breaks for keys we never held among 100 for one we hold: no task per break,
    at most one waiting per key, no acknowledgement for a key we do not hold."""
    import os

    from quicfs.client import leases as leases_module
    from quicfs.smb2.constants import LeaseState

    R, H = LeaseState.READ_CACHING, LeaseState.HANDLE_CACHING
    ours = b"O" * 16
    seen: list[tuple[Header, bytes]] = []

    async def answer(s, h, msg):
        if msg is not None:
            seen.append((h, bytes(msg)))
        out = [response(h.command, h.message_id, ECHO_OK)]
        if h.command == Command.ECHO:
            out += [lease_break(ours if i % 11 == 0 else os.urandom(16), R | H, R | H)
                    for i in range(1_100)]
            out.append(lease_break(ours, R | H, LeaseState.NONE))  # the last
        return out

    breaks = Breaks()

    async def client(conn):
        w = Watched(conn, breaks, ours, R | H)
        most_tasks = most_waiting = 0
        async with trio.open_nursery() as n:
            n.start_soon(w.leases.run)
            await trio.sleep(0.01)
            before = count_tasks()
            await conn.request(EchoRequest())
            while LeaseState.NONE not in w.states:
                most_tasks = max(most_tasks, count_tasks() - before)
                most_waiting = max(most_waiting, len(getattr(w.leases, "_waiting", ())))
                await trio.lowlevel.checkpoint()
            await trio.sleep(0.3)
            n.cancel_scope.cancel()
        acks = break_acks(seen)
        assert acks and {key for key, _ in acks} == {ours}
        assert most_tasks <= 0  # the workers were there before
        assert most_waiting <= 1
        assert w.leases.ignored == 1_000
        assert len(acks) <= leases_module.WORKERS + 101

    await run_against(serve(answer), client, on_break=breaks)


async def test_break_before_its_open_exists_is_acknowledged():
    """An honest server may break a lease before the answer to the CREATE that got it
    has reached its caller: the key is ours (a CREATE in flight asked for it), so the
    break is acknowledged, taking all (nothing is known held yet), never left to time
    out (35 s on the server)."""
    from quicfs.client.leases import Leases
    from quicfs.smb2.constants import (
        CreateAction,
        CreateResponseFlags,
        FileAttributes,
        LeaseFlags,
        LeaseState,
        OplockLevel,
    )
    from quicfs.smb2.create import CreateRequest, CreateResponse, LeaseRequestV2, LeaseResponseV2
    from quicfs.smb2.fileid import FileId

    R, H = LeaseState.READ_CACHING, LeaseState.HANDLE_CACHING
    key = b"C" * 16
    seen: list[tuple[Header, bytes]] = []
    acked = trio.Event()

    async def answer(s, h, msg):
        if msg is not None:
            seen.append((h, bytes(msg)))
        if h.command == Command.CREATE:
            body = CreateResponse(
                OplockLevel.LEASE, CreateResponseFlags.NONE, CreateAction.OPENED, 0, 0, 0,
                0, 0, 0, FileAttributes.NORMAL, FileId(1, 2),
                (LeaseResponseV2(key, R | H, LeaseFlags.NONE),)).pack()
            return [lease_break(key, R | H, R), response(h.command, h.message_id, body)]
        if h.command == Command.OPLOCK_BREAK:
            acked.set()
        return [response(h.command, h.message_id, ECHO_OK)]

    breaks = Breaks()

    async def client(conn):
        await conn.request(EchoRequest())
        tree = make_tree(conn)
        leases = breaks.leases = Leases(tree)
        async with trio.open_nursery() as n:
            n.start_soon(leases.run)
            await tree.request(CreateRequest("f", oplock_level=OplockLevel.LEASE, contexts=(
                LeaseRequestV2(key, R | H),)))
            with trio.fail_after(2):
                await acked.wait()
            n.cancel_scope.cancel()
        assert break_acks(seen) == [(key, LeaseState.NONE)]
        assert leases.ignored == 0 and not tree.leasing

    await run_against(serve(answer), client, on_break=breaks)


@pytest.mark.parametrize("way", ["read_stream", "write_stream", "readahead"])
async def test_a_window_of_requests_goes_out_in_offset_order(monkeypatch, way):
    """The READs (WRITEs) of a window go on the wire by offset: on one ordered QUIC
    stream the first chunk's answer would otherwise come after every other one's (at
    0.3 MB/s, after ~8 MiB: ~27 s before a first byte). Trio runs a batch of new tasks
    in either order, so the order is forced both ways here."""
    import trio._core._run as trio_run

    from quicfs.fs.readahead import ReadAhead
    from quicfs.smb2.io import ReadResponse, WriteResponse

    chunk = 65536
    for reverse in (0.0, 0.9):
        monkeypatch.setattr(trio_run._r, "random", lambda r=reverse: r)
        offsets: list[int] = []

        async def answer(s, h, msg, offsets=offsets):
            if h.command == Command.READ:
                offsets.append(struct.unpack_from("<Q", msg, 64 + 8)[0])
                body = ReadResponse(memoryview(bytes(chunk))).pack()
            elif h.command == Command.WRITE:
                offsets.append(struct.unpack_from("<Q", msg, 64 + 8)[0])
                body = WriteResponse(chunk).pack()
            else:
                body = ECHO_OK
            return [response(h.command, h.message_id, body)]

        async def client(conn):
            await conn.request(EchoRequest())
            handle = leased_open(make_tree(conn), b"", 0)
            # The read-ahead reads as far as the size the file had when opened.
            handle.created = dataclasses.replace(handle.created, end_of_file=8 * chunk)
            with trio.fail_after(5):
                if way == "read_stream":
                    async def sink(data: bytes) -> None:
                        pass

                    await handle.read_stream(sink, length=8 * chunk, chunk=chunk, depth=8)
                elif way == "write_stream":
                    left = [bytes(chunk)] * 8

                    async def source(n: int) -> bytes:
                        return left.pop() if left else b""

                    assert await handle.write_stream(source, chunk=chunk, depth=8) \
                        == 8 * chunk
                else:
                    async with trio.open_nursery() as n:
                        ahead = ReadAhead(handle, n, chunk=chunk, window=8)
                        assert await ahead.read(0, 8 * chunk) == bytes(8 * chunk)
                        n.cancel_scope.cancel()

        await run_against(serve(answer), client)
        want = [i * chunk for i in range(8)]
        assert offsets[:8] == want, (way, reverse, offsets)


async def test_read_ahead_serves_a_random_read_directly():
    """A read away from where the last one ended is not read ahead: it goes to the server
    alone, at once, and gives that range's bytes (before: a TypeError, EIO at the mount,
    since the direct path did not take a place in line)."""
    from quicfs.fs.readahead import ReadAhead
    from quicfs.smb2.io import ReadResponse

    chunk = 65536
    content = bytes(i * 7 % 251 for i in range(16 * chunk))
    asked: list[tuple[int, int]] = []

    async def answer(s, h, msg):
        if h.command != Command.READ:
            return [response(h.command, h.message_id, ECHO_OK)]
        length, offset = struct.unpack_from("<IQ", msg, 64 + 4)
        asked.append((offset, length))
        body = ReadResponse(memoryview(content[offset:offset + length])).pack()
        return [response(h.command, h.message_id, body)]

    async def client(conn):
        await conn.request(EchoRequest())
        handle = leased_open(make_tree(conn), b"", 0)
        handle.created = dataclasses.replace(handle.created, end_of_file=len(content))
        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                ahead = ReadAhead(handle, n, chunk=chunk, window=4)
                at = 9 * chunk + 100
                assert await ahead.read(at, 5000) == content[at:at + 5000]
                n.cancel_scope.cancel()

    await run_against(serve(answer), client)
    assert asked == [(9 * chunk + 100, 5000)]
