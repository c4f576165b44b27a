"""Header, negotiate, session setup, tree connect, credits and framing: pure parts."""

from __future__ import annotations

import struct
import uuid

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from quicfs.errors import ConnectionLost, MalformedError, ProtocolError, QuicfsError
from quicfs.smb2.constants import (
    Cipher,
    Command,
    Dialect,
    HeaderFlags,
    SigningAlgorithm,
)
from quicfs.smb2.credits import CreditWindow, credit_charge
from quicfs.smb2.header import Header, split_compound
from quicfs.smb2.negotiate import (
    EncryptionContext,
    NegotiateRequest,
    NegotiateResponse,
    NetnameContext,
    PreauthIntegrityContext,
    SigningContext,
    TransportCapabilitiesContext,
    pack_contexts,
)
from quicfs.smb2.session_setup import SessionSetupRequest, SessionSetupResponse
from quicfs.smb2.tree import TreeConnectRequest, TreeConnectResponse
from quicfs.transport.framing import FramedStream


def test_header_known_bytes():
    h = Header(command=Command.READ, message_id=7, credit_charge=2, credits=10,
               flags=HeaderFlags.SIGNED, tree_id=5, session_id=0x1122334455667788)
    raw = h.pack()
    assert len(raw) == 64
    assert raw[:4] == b"\xfeSMB"
    assert struct.unpack_from("<HHIHH", raw, 4) == (64, 2, 0, 8, 10)
    assert struct.unpack_from("<I", raw, 16)[0] == 8
    assert struct.unpack_from("<Q", raw, 24)[0] == 7
    assert struct.unpack_from("<II", raw, 32) == (0xFEFF, 5)
    assert struct.unpack_from("<Q", raw, 40)[0] == 0x1122334455667788
    assert Header.unpack(raw) == h


def test_async_header_round_trip():
    h = Header(command=Command.WRITE, message_id=9, async_id=0xABCDEF,
               flags=HeaderFlags.SERVER_TO_REDIR | HeaderFlags.ASYNC_COMMAND, status=0x103)
    back = Header.unpack(h.pack())
    assert back.is_async and back.async_id == 0xABCDEF and back.status == 0x103


def test_split_compound():
    a = bytearray(Header(command=Command.CREATE, next_command=72).pack() + bytes(8))
    b = Header(command=Command.CLOSE).pack() + b"xyz"
    parts = split_compound(bytes(a) + b)
    assert [Header.unpack(p).command for p in parts] == [Command.CREATE, Command.CLOSE]
    assert bytes(parts[1]) == b


@pytest.mark.parametrize("nxt", [1, 63, 65, 10_000])
def test_split_compound_rejects_bad_next(nxt):
    a = Header(command=Command.CREATE, next_command=nxt).pack() + bytes(80)
    with pytest.raises(MalformedError):
        split_compound(a + Header(command=Command.CLOSE).pack())


def test_negotiate_request_layout():
    guid = uuid.UUID("11111111-2222-3333-4444-555555555555")
    req = NegotiateRequest(
        dialects=(Dialect.SMB_3_1_1,), client_guid=guid,
        contexts=(PreauthIntegrityContext(salt=b"s" * 32), EncryptionContext((2, 1)),
                  SigningContext((2,)), NetnameContext("srv"), TransportCapabilitiesContext()),
    )
    body = req.pack()
    size, count, _sec, _res, _caps = struct.unpack_from("<HHHHI", body, 0)
    assert (size, count) == (36, 1)
    assert body[12:28] == guid.bytes_le
    ctx_offset, ctx_count = struct.unpack_from("<IH", body, 28)
    assert ctx_count == 5
    assert ctx_offset % 8 == 0 and ctx_offset == 64 + 36 + 2 + 2  # padded to 8
    first = body[ctx_offset - 64 :]
    assert struct.unpack_from("<HH", first, 0) == (1, 38)  # preauth: 2+2+2+32


def _negotiate_response(dialect=Dialect.SMB_3_1_1, contexts=()) -> bytes:
    ctx = pack_contexts(list(contexts))
    sec = b"\x60\x06token"
    fixed = 64 + 64
    sec_off = fixed
    ctx_off = sec_off + len(sec) + (-(sec_off + len(sec)) % 8)
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, len(contexts), bytes(16), 0x4,
                       1 << 20, 8 << 20, 8 << 20, 0, 0, sec_off, len(sec), ctx_off)
    body += sec + bytes(ctx_off - sec_off - len(sec)) + ctx
    head = Header(command=Command.NEGOTIATE, flags=HeaderFlags.SERVER_TO_REDIR).pack()
    return head + body


def test_negotiate_response_parses_contexts():
    msg = _negotiate_response(contexts=[
        PreauthIntegrityContext(salt=b"x" * 32), EncryptionContext((Cipher.AES_256_GCM,)),
        SigningContext((SigningAlgorithm.AES_GMAC,)),
    ])
    resp = NegotiateResponse.unpack(msg)
    assert resp.dialect == Dialect.SMB_3_1_1
    assert resp.max_read_size == 8 << 20
    assert resp.security_buffer == b"\x60\x06token"
    enc = resp.context(EncryptionContext)
    assert isinstance(enc, EncryptionContext) and enc.ciphers == (Cipher.AES_256_GCM,)
    sig = resp.context(SigningContext)
    assert isinstance(sig, SigningContext) and sig.algorithms == (SigningAlgorithm.AES_GMAC,)


def test_session_setup_and_tree_connect():
    req = SessionSetupRequest(security_buffer=b"NTLMSSP")
    body = req.pack()
    assert struct.unpack_from("<HH", body, 12) == (88, 7) and body[24:] == b"NTLMSSP"
    head = Header(command=Command.SESSION_SETUP, flags=HeaderFlags.SERVER_TO_REDIR).pack()
    resp = SessionSetupResponse.unpack(head + struct.pack("<HHHH", 9, 0, 72, 3) + b"abc")
    assert resp.security_buffer == b"abc"
    t = TreeConnectRequest("\\\\srv\\share").pack()
    assert struct.unpack_from("<HHHH", t, 0) == (9, 0, 72, 22)
    head = Header(command=Command.TREE_CONNECT, flags=HeaderFlags.SERVER_TO_REDIR).pack()
    tr = TreeConnectResponse.unpack(head + struct.pack("<HBBIII", 16, 1, 0, 0x8000, 0, 0x1F01FF))
    assert tr.share_type == 1 and tr.share_flags == 0x8000


DECODERS = [NegotiateResponse.unpack, SessionSetupResponse.unpack, TreeConnectResponse.unpack,
            Header.unpack, split_compound]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(DECODERS))
def test_decoders_raise_only_our_errors(data, decoder):
    try:
        decoder(data)
    except QuicfsError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_negotiate_mutations(data):
    msg = bytearray(_negotiate_response(contexts=[PreauthIntegrityContext(salt=b"x" * 32),
                                                  EncryptionContext((1,))]))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(64, len(msg) - 1))
        msg[pos] = data.draw(st.integers(0, 255))
    msg = msg[: data.draw(st.integers(0, len(msg)))]
    try:
        NegotiateResponse.unpack(bytes(msg))
    except MalformedError:
        pass


def test_credit_charge():
    assert credit_charge(0) == 1
    assert credit_charge(65536) == 1
    assert credit_charge(65537) == 2
    assert credit_charge(1 << 20) == 16


def test_credit_window():
    w = CreditWindow(initial=1)
    assert w.take(1) == 0
    assert not w.can_take(1)
    w.grant(10)
    assert w.take(4) == 1 and w.next_message_id == 5 and w.available == 6
    w.grant(10**9)  # a hostile grant is capped
    assert w.available == 8192
    with pytest.raises(ProtocolError):
        w.take(9000)


async def test_framing_round_trip():
    a, b = trio.testing.memory_stream_pair()
    left = FramedStream(a, kind="tcp", peer="a")
    right = FramedStream(b, kind="tcp", peer="b")
    msgs = [b"", b"x", bytes(range(256)) * 1000]
    async with trio.open_nursery() as n:
        async def send():
            for m in msgs:
                await left.send_message(m)

        n.start_soon(send)
        for m in msgs:
            assert await right.receive_message() == m


async def test_framing_rejects_bad_header_and_eof():
    a, b = trio.testing.memory_stream_pair()
    right = FramedStream(b, kind="tcp", peer="b")
    await a.send_all(b"\x01\x00\x00\x05hello")
    with pytest.raises(ProtocolError):
        await right.receive_message()
    a, b = trio.testing.memory_stream_pair()
    right = FramedStream(b, kind="tcp", peer="b")
    await a.send_all(b"\x00\x00\x00\x10short")
    await a.aclose()
    with pytest.raises(ConnectionLost):
        await right.receive_message()
