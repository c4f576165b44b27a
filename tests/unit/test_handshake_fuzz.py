"""The server is not trusted, from its first byte: a real Connection, Session and Tree
(over an in-memory stream) get a NEGOTIATE, SESSION_SETUP or TREE_CONNECT response, or
an encrypted message, that is random or a mutation of a valid one. The handshake then
succeeds or fails with one of the project's errors (quicfs/errors.py), in bounded time:
any other exception is a bug. And a compound whose members are not all answered never
costs the connection its other requests.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Iterator

import pytest
import spnego
import trio
import trio.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from quicfs.client.auth import AuthError
from quicfs.client.connection import Connection, open_connection
from quicfs.client.nursery import open_nursery
from quicfs.client.session import Session
from quicfs.client.tree import Tree
from quicfs.errors import MalformedError, ProtocolError, QuicfsError
from quicfs.smb2 import crypto
from quicfs.smb2.constants import Cipher, Command, HashAlgorithm, HeaderFlags
from quicfs.smb2.control import EchoRequest, EchoResponse
from quicfs.smb2.header import Header
from quicfs.smb2.negotiate import (
    NegotiateContext,
    PreauthIntegrityContext,
    UnknownContext,
    pack_contexts,
)
from quicfs.smb2.status import Status
from quicfs.smb2.wire import pad8
from quicfs.transport.framing import FramedStream
from tests.support.hostile_smb import (
    Behaviour,
    negotiate_response,
    session_setup_body,
    tree_connect_body,
)
from tests.unit.test_decoder_fuzz import mutated
from tests.unit.test_hostile_peer import KEYS as FAKE_KEYS

# Each example is one trio.run of a whole exchange: few of them, each given a deadline;
# the same ones each run (a strict xfail must fail every time), and no shrinking (each
# step of it is another exchange).
FUZZ = settings(max_examples=100, deadline=2000, derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: No exchange of these takes more than this on loopback memory streams.
EXCHANGE_SECONDS = 3.0
ERROR_BODY = struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"
NEGOTIATE_BODY = negotiate_response(Behaviour(), b"s" * 32)

#: Answers a request (its header and bytes) with the messages to send back.
Answer = Callable[[Header, bytes], list[bytes]]


def reply(h: Header, body: bytes, *, status: int = Status.SUCCESS, session_id: int = 0,
          tree_id: int = 0, credits: int = 8) -> bytes:
    return Header(command=h.command, message_id=h.message_id, credits=credits,
                  status=status, flags=HeaderFlags.SERVER_TO_REDIR, session_id=session_id,
                  tree_id=tree_id).pack() + body


def honest(h: Header, msg: bytes) -> list[bytes]:
    """What a server that says little says: NEGOTIATE, ECHO, TREE_DISCONNECT, LOGOFF."""
    if h.command == Command.NEGOTIATE:
        return [reply(h, NEGOTIATE_BODY)]
    if h.command in (Command.ECHO, Command.TREE_DISCONNECT, Command.LOGOFF):
        return [reply(h, EchoResponse().pack())]
    return [reply(h, ERROR_BODY, status=Status.NOT_SUPPORTED)]


async def exchange(answer: Answer, client: Callable[[Connection], Awaitable[None]]
                   ) -> BaseException | None:
    """Run ``client`` on a Connection negotiated with a peer that answers every request
    with ``answer``; what the client raised, if anything. A QuicfsError is the client's
    refusal; anything else escapes as the bug it is, and so does a hang."""
    a, b = trio.testing.memory_stream_pair()
    client_side = FramedStream(a, kind="tcp", peer="test")
    server_side = FramedStream(b, kind="tcp", peer="client")

    async def peer() -> None:
        while True:
            try:
                msg = bytes(await server_side.receive_message())
            except QuicfsError:
                return
            if msg[:4] == b"\xfdSMB":  # sealed with FAKE_KEYS' key (both ways)
                h = Header.unpack(crypto.decrypt_message(Cipher.AES_128_GCM, KEY, msg)[1])
            else:
                h = Header.unpack(msg)
            for out in answer(h, msg):
                try:
                    await server_side.send_message(out)
                except QuicfsError:
                    return

    with trio.fail_after(EXCHANGE_SECONDS):
        async with open_nursery() as nursery:  # a bug escapes as itself, not a group
            nursery.start_soon(peer)
            try:
                async with open_connection(client_side, server_name="test",
                                           negotiate_within=EXCHANGE_SECONDS / 2) as conn:
                    await client(conn)
            except QuicfsError as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()
    return None


def body_of(sample_body: bytes) -> st.SearchStrategy[bytes]:
    """A body that is random, or a mutation of a valid one."""
    return st.one_of(st.binary(max_size=300), mutated(sample_body))


async def _idle(conn: Connection) -> None:
    pass


# ---------------------------------------------------------------------- NEGOTIATE
_U16S = st.sampled_from([0, 1, 2, 3, 4, 5, 0x7FFF, 0xFFFF])


def _mostly(usual: int, *rare: int) -> st.SearchStrategy[int]:
    """``usual`` most of the time, else one of ``rare`` (hypothesis's own choices lean
    to the unusual)."""
    return st.tuples(st.integers(0, 99), st.sampled_from(rare)).map(
        lambda pick: usual if pick[0] < 80 else pick[1])


#: True nine times in ten (hypothesis leans to small integers: 0 is the usual case).
_OFTEN = st.integers(0, 99).map(lambda n: n < 90)
#: A count, length or offset made wrong now and then.
_MOSTLY_0 = _mostly(0, 1, -1, 8, 1000)


@st.composite
def _context_data(draw: st.DrawFn, ctype: int) -> bytes:
    """A context's data: for the kinds the client reads, a count and that many (or a
    few more or fewer) u16 values, as 2.2.3.1 lays them out; else anything."""
    if ctype in (1, 2, 3, 8) and draw(_OFTEN):
        # One value mostly: a server's answer names the one it chose (2.2.4).
        values = draw(st.tuples(st.integers(0, 99), st.lists(_U16S, min_size=1, max_size=3))
                      .map(lambda pick: pick[1][:1] if pick[0] < 70 else pick[1]))
        count = len(values) + draw(_MOSTLY_0)
        head = struct.pack("<H", count % 65536)
        salt = b""
        if ctype == 1:  # HashAlgorithmCount, SaltLength, algorithms, salt
            salt = draw(st.binary(max_size=40))
            head += struct.pack("<H", len(salt) + draw(_MOSTLY_0))
        data = head + b"".join(struct.pack("<H", v) for v in values) + salt
        # Now and then cut short, its context's DataLength saying so.
        return data if draw(_OFTEN) else data[:draw(st.integers(0, len(data)))]
    return draw(st.binary(max_size=48))


@st.composite
def negotiate_bodies(draw: st.DrawFn) -> bytes:
    """NEGOTIATE responses built field by field (2.2.4): dialects, sizes, a security
    buffer and contexts each drawn, the counts and offsets mostly right."""
    # Mostly the kinds the client reads; NETNAME (5) and TRANSPORT (6) now and then.
    types = draw(st.lists(_mostly(2, 8, 8, 3, 1, 5, 6, 0x100), max_size=4))
    contexts: list[NegotiateContext] = [UnknownContext(t, draw(_context_data(t)))
                                        for t in types]
    if draw(_OFTEN):  # the one context 3.1.1 cannot do without
        contexts.insert(0, PreauthIntegrityContext((HashAlgorithm.SHA_512,), b"s" * 32))
    packed = pack_contexts(contexts)
    security = draw(st.binary(max_size=24))
    sec_offset = 64 + 64
    ctx_offset = sec_offset + len(security) + pad8(sec_offset + len(security))
    sizes = _mostly(1 << 20, 0, 1, 4096, 65536, 8 << 20, 2**32 - 1)
    body = struct.pack(
        "<HHHH16sIIIIQQHHI", 65, draw(st.integers(0, 3)),
        draw(_mostly(0x311, 0x300, 0x302, 0x2FF, 0xFFFF)),
        (len(contexts) + draw(_MOSTLY_0)) % 65536,
        bytes(16), draw(st.integers(0, 0xFF)), draw(sizes), draw(sizes), draw(sizes),
        0, 0, sec_offset if security else 0, len(security),
        ctx_offset + draw(_MOSTLY_0))
    return body + security + bytes(pad8(sec_offset + len(security))) + packed


def _negotiate_with(body: bytes, status: int = Status.SUCCESS) -> BaseException | None:
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command == Command.NEGOTIATE:
            return [reply(h, body, status=status)]
        return honest(h, msg)

    return trio.run(exchange, answer, _idle)


@FUZZ
@given(body=body_of(NEGOTIATE_BODY), status=st.sampled_from([0, 0xC0000001]))
def test_negotiate_response_mutated(body: bytes, status: int) -> None:
    _negotiate_with(body, status)


@settings(FUZZ, max_examples=500)  # cheap, and the one that reaches the client's checks
@given(body=negotiate_bodies())
def test_negotiate_response_built(body: bytes) -> None:
    _negotiate_with(body)


# ---------------------------------------------------------------------- SESSION_SETUP
@pytest.fixture(scope="module", autouse=True)
def _ntlm_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pyspnego's NTLM acceptor will not start without a user file (none is used)."""
    users = tmp_path_factory.mktemp("ntlm") / "users"
    users.write_text(":u:p\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NTLM_USER_FILE", str(users))
        yield


def _challenge(token: bytes) -> bytes:
    """A real NTLM CHALLENGE to the client's NEGOTIATE token (pyspnego's acceptor)."""
    return spnego.server(protocol="ntlm").step(token) or b""


def _setup_peer(challenge_body: Callable[[bytes], bytes],
                final_body: Callable[[], bytes]) -> Answer:
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command != Command.SESSION_SETUP:
            return honest(h, msg)
        offset, length = struct.unpack_from("<HH", msg, 64 + 12)
        token = msg[offset:offset + length]
        if not h.session_id:
            return [reply(h, challenge_body(token), session_id=0x55,
                          status=Status.MORE_PROCESSING_REQUIRED)]
        return [reply(h, final_body(), session_id=0x55)]
    return answer


async def _setup(conn: Connection) -> None:
    await Session(conn).setup(username="u", password="p", domain=None)




def test_truncated_ntlm_challenge_is_an_authentication_error() -> None:
    """A CHALLENGE cut after its signature: refused as an authentication failure."""
    def challenge(token: bytes) -> bytes:
        return session_setup_body(b"NTLMSSP\0\x02")

    got = trio.run(exchange, _setup_peer(challenge, lambda: ERROR_BODY), _setup)
    assert isinstance(got, AuthError) and str(got).startswith("authentication failed: ")


@FUZZ
@given(data=st.data())
def test_session_setup_challenge(data: st.DataObject) -> None:
    """The first SESSION_SETUP response, its NTLM CHALLENGE fuzzed (the client's
    authenticator then reads it)."""
    def challenge(token: bytes) -> bytes:
        return data.draw(body_of(session_setup_body(_challenge(token))))

    trio.run(exchange, _setup_peer(challenge, lambda: ERROR_BODY), _setup)


@FUZZ
@given(data=st.data())
def test_session_setup_final(data: st.DataObject) -> None:
    """The last SESSION_SETUP response fuzzed (after a real CHALLENGE): refused, never a
    session."""
    def final() -> bytes:
        return data.draw(body_of(session_setup_body(b"")))

    def challenge(token: bytes) -> bytes:
        return session_setup_body(_challenge(token))

    got = trio.run(exchange, _setup_peer(challenge, final), _setup)
    assert isinstance(got, QuicfsError)  # unsigned: never taken


# ---------------------------------------------------------------------- TREE_CONNECT
@FUZZ
@given(body=body_of(tree_connect_body()), tree_id=st.sampled_from([0, 1, 2**32 - 1]))
def test_tree_connect_response(body: bytes, tree_id: int) -> None:
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command == Command.TREE_CONNECT:
            return [reply(h, body, tree_id=tree_id)]
        return honest(h, msg)

    async def connect(conn: Connection) -> None:
        # A session whose handshake is not this test's: nothing signed.
        await Tree(Session(conn), "test", "share").connect()

    trio.run(exchange, answer, connect)


# ---------------------------------------------------------------------- transform header
KEY = FAKE_KEYS.encryption_key
SID = FAKE_KEYS.session_id


def _sealed_echo(h: Header) -> bytes:
    plain = Header(command=Command.ECHO, message_id=h.message_id, credits=5,
                   flags=HeaderFlags.SERVER_TO_REDIR, session_id=SID).pack()
    return crypto.encrypt_message(Cipher.AES_128_GCM, KEY, SID,
                                  plain + EchoResponse().pack())


async def _sealed_request(conn: Connection) -> None:
    conn.add_session(FAKE_KEYS)
    await conn.request(EchoRequest(), keys=FAKE_KEYS, encrypt=True)


@FUZZ
@given(data=st.data())
def test_encrypted_response(data: st.DataObject) -> None:
    """The answer to an encrypted ECHO mutated anywhere: transform header, ciphertext or
    tag. Refused, or (a mutation that changed nothing that counts) taken."""
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if msg[:4] == b"\xfdSMB":
            return [data.draw(mutated(_sealed_echo(h)))]
        return honest(h, msg)

    trio.run(exchange, answer, _sealed_request)


@FUZZ
@given(data=st.data())
def test_sealed_garbage(data: st.DataObject) -> None:
    """A transform header and tag that are right around a plaintext that is not: what
    decrypts is still checked (header, compound chain, MessageId)."""
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if msg[:4] != b"\xfdSMB":
            return honest(h, msg)
        plain = data.draw(mutated(crypto.decrypt_message(
            Cipher.AES_128_GCM, KEY, _sealed_echo(h))[1]))
        return [crypto.encrypt_message(Cipher.AES_128_GCM, KEY, SID, plain)]

    trio.run(exchange, answer, _sealed_request)


def test_valid_samples_succeed() -> None:
    """The samples the fuzzers mutate are ones the client takes (else the fuzzers would
    test nothing but refusals)."""
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command == Command.TREE_CONNECT:
            return [reply(h, tree_connect_body(), tree_id=9)]
        if msg[:4] == b"\xfdSMB":
            return [_sealed_echo(h)]
        return honest(h, msg)

    async def client(conn: Connection) -> None:
        assert conn.params is not None and conn.params.max_read_size == 1 << 20
        tree = Tree(Session(conn), "test", "share")
        await tree.connect()
        assert tree.tree_id == 9
        await _sealed_request(conn)

    assert trio.run(exchange, answer, client) is None


# ---------------------------------------------------------------------- compounds
ECHO_BODY = EchoResponse().pack()


async def test_compound_members_never_answered_cost_only_their_caller() -> None:
    """Of three compounded requests the server answers the first only. The caller
    gives up (its own deadline); the connection goes on serving other requests, and
    the late answers, when they come, are known for what they are."""
    held: list[Header] = []

    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command != Command.ECHO:
            return honest(h, msg)
        if h.next_command:  # the compound: one Header per member
            members = _members(msg)
            held.extend(members[1:])
            return [reply(members[0], ECHO_BODY)]
        late = [reply(m, ECHO_BODY) for m in held]
        held.clear()
        return [reply(h, ECHO_BODY), *late]

    async def client(conn: Connection) -> None:
        before = conn.credits_available
        with trio.move_on_after(0.3) as scope:
            await conn.send_chain([EchoRequest()] * 3)
        assert scope.cancelled_caught
        assert conn.in_flight == 2  # kept, to know their answers when they come
        assert (await conn.request(EchoRequest())).status == Status.SUCCESS
        await trio.testing.wait_all_tasks_blocked()
        assert conn.in_flight == 0 and not conn.closed
        assert conn.credits_available >= before
        assert (await conn.request(EchoRequest())).status == Status.SUCCESS

    assert await exchange(answer, client) is None


async def test_compound_answer_repeated_fails_the_connection() -> None:
    """A member answered twice: the second answer has no request (its MessageId is
    spent), and the connection is ended, every waiter told at once."""
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command != Command.ECHO:
            return honest(h, msg)
        members = _members(msg)
        return [reply(members[0], ECHO_BODY), reply(members[0], ECHO_BODY)]

    async def client(conn: Connection) -> None:
        with pytest.raises(ProtocolError, match="unknown MessageId"):
            await conn.send_chain([EchoRequest()] * 3)
        assert conn.closed

    assert await exchange(answer, client) is None


async def test_compound_answer_with_a_broken_chain_fails_every_member() -> None:
    """A response compound whose NextCommand points past its end (3.2.5.1.9): all three
    callers fail at once with the same MalformedError, none waits."""
    def answer(h: Header, msg: bytes) -> list[bytes]:
        if h.command != Command.ECHO:
            return honest(h, msg)
        first = bytearray(reply(_members(msg)[0], ECHO_BODY) + bytes(4))
        struct.pack_into("<I", first, 20, 4096)
        return [bytes(first)]

    async def client(conn: Connection) -> None:
        with pytest.raises(MalformedError, match="NextCommand 4096"):
            await conn.send_chain([EchoRequest()] * 3)
        assert conn.closed and conn.in_flight == 0

    assert await exchange(answer, client) is None


def _members(msg: bytes) -> list[Header]:
    from quicfs.smb2.header import split_compound

    return [Header.unpack(m) for m in split_compound(msg)]
