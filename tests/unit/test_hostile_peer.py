"""The server is not trusted: a scripted peer sends what no honest server would.

Samba cannot be made to misbehave, so these drive a real Connection over an in-memory
stream against a peer that answers with crafted bytes.
"""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from quicfs.client.connection import open_connection
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


def negotiate_body(dialect: int = Dialect.SMB_3_1_1) -> bytes:
    ctx = pack_contexts([PreauthIntegrityContext(salt=b"s" * 32),
                         EncryptionContext((Cipher.AES_128_GCM,)),
                         SigningContext((SigningAlgorithm.AES_CMAC,))])
    ctx_off = 64 + 64
    return struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, 3, bytes(16), 0x4, 1 << 20,
                       1 << 20, 1 << 20, 0, 0, 0, 0, ctx_off) + ctx


def response(command: int, mid: int, body: bytes, *, credits: int = 10, status: int = 0,
             flags: HeaderFlags = HeaderFlags.SERVER_TO_REDIR) -> bytes:
    return Header(command=command, message_id=mid, credits=credits, status=status,
                  flags=flags).pack() + body


async def run_against(peer_script, client_script):
    """Run ``client_script(conn)`` against a peer that answers NEGOTIATE and then runs
    ``peer_script(peer, first_request_header)``."""
    a, b = trio.testing.memory_stream_pair()
    client_side = FramedStream(a, kind="tcp", peer="test")
    server_side = FramedStream(b, kind="tcp", peer="client")

    async def peer():
        msg = await server_side.receive_message()
        h = Header.unpack(msg)
        await server_side.send_message(response(Command.NEGOTIATE, h.message_id,
                                                negotiate_body()))
        try:
            msg = await server_side.receive_message()
        except ConnectionLost:
            return
        # An encrypted request has no plain header; its MessageId is the next one, 1.
        h = Header.unpack(msg) if msg[:4] == b"\xfeSMB" else Header(command=0, message_id=1)
        await peer_script(server_side, h, b)

    async with trio.open_nursery() as n:
        n.start_soon(peer)
        with trio.fail_after(5):
            async with open_connection(client_side, server_name="test") as conn:
                await client_script(conn)
        n.cancel_scope.cancel()


class FakeSession:
    """Just what Connection reads of a Session: keys and policy, no handshake."""

    session_id = 0x77
    signs = True
    signing_algorithm = SigningAlgorithm.AES_CMAC
    signing_key = b"k" * 16
    cipher = Cipher.AES_128_GCM
    encryption_key = b"e" * 16
    decryption_key = b"e" * 16


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
        conn.sessions[0x77] = FakeSession()
        with pytest.raises(SecurityError, match="not signed"):
            await conn.request(EchoRequest(), session=FakeSession())

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
        conn.sessions[0x77] = FakeSession()
        with pytest.raises(SecurityError, match="bad signature on ECHO"):
            await conn.request(EchoRequest(), session=FakeSession())

    await run_against(peer, client)


async def test_undecryptable_response_is_never_data():
    """An encrypted answer that fails its tag ends the connection; nothing reaches the
    caller as data (MS-SMB2 3.2.5.1.1.1)."""
    from quicfs.errors import SecurityError
    from quicfs.smb2 import crypto

    key = FakeSession.encryption_key


    async def peer(s, h, raw):
        plain = Header(command=Command.ECHO, message_id=h.message_id, credits=5,
                       flags=HeaderFlags.SERVER_TO_REDIR, session_id=0x77).pack() + ECHO_OK
        sealed = bytearray(crypto.encrypt_message(Cipher.AES_128_GCM, key, 0x77, plain))
        sealed[-1] ^= 0x01
        await s.send_message(sealed)

    async def client(conn):
        conn.sessions[0x77] = FakeSession()
        with pytest.raises(SecurityError, match="decryption failed"):
            await conn.request(EchoRequest(), session=FakeSession(), encrypt=True)
        assert conn.closed

    await run_against(peer, client)


async def test_plaintext_answer_to_encrypted_request_is_refused():
    from quicfs.errors import SecurityError


    async def peer(s, h, raw):
        # The request came encrypted, so it is not a plain header at all.
        await s.send_message(response(Command.ECHO, h.message_id, ECHO_OK))

    async def client(conn):
        conn.sessions[0x77] = FakeSession()
        with pytest.raises(SecurityError, match="not encrypted"):
            await conn.request(EchoRequest(), session=FakeSession(), encrypt=True)

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
