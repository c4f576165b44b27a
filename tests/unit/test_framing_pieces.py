"""The deframer cuts SMB2 messages (MS-SMB2 2.1: a 4-byte length, then the message) out
of whatever pieces a stream hands over, uncopied (QUIC's receive_pieces) or as one buffer
a call (TCP's receive_some): every message comes out whole and exact however the bytes
were split, and a bad header or an oversized length is refused."""

from __future__ import annotations

import itertools

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from quicfs.errors import ConnectionLost, ProtocolError
from quicfs.transport.framing import MAX_RECEIVE, FramedStream, frame_header


class Pieces(trio.abc.ReceiveStream):
    """Hands over pre-cut pieces: each call some of them (memoryviews, as QUIC's stream
    does), then the end."""

    def __init__(self, cuts: list[bytes], per_call: int, pieces: bool) -> None:
        self._cuts = list(cuts)
        self._per_call = per_call
        if not pieces:
            self.receive_pieces = None  # type: ignore[assignment]

    async def receive_pieces(self, max_bytes: int) -> list[bytes | memoryview]:
        await trio.lowlevel.checkpoint()
        taken, self._cuts = self._cuts[:self._per_call], self._cuts[self._per_call:]
        return [memoryview(c) for c in taken] or [b""]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._cuts.pop(0) if self._cuts else b""

    async def aclose(self) -> None:
        pass

    async def send_all(self, data: bytes) -> None:  # FramedStream wants a Stream
        raise AssertionError("not used")

    async def wait_send_all_might_not_block(self) -> None:
        raise AssertionError("not used")


def split(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


async def receive_all(cuts: list[bytes], per_call: int, pieces: bool) -> list[bytes]:
    framed = FramedStream(Pieces(cuts, per_call, pieces), kind="quic", peer="test")
    out = []
    with pytest.raises(ConnectionLost):
        while True:
            out.append(bytes(await framed.receive_message()))
    return out


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=12),
       points=st.lists(st.integers(min_value=0, max_value=40_000), max_size=40),
       per_call=st.integers(min_value=1, max_value=5), pieces=st.booleans())
def test_messages_come_out_whole_however_split(messages, points, per_call, pieces):
    wire = b"".join(frame_header(len(m)) + m for m in messages)
    got = trio.run(receive_all, split(wire, points), per_call, pieces)
    assert got == messages


def test_a_large_message_in_many_small_pieces():
    big = bytes(range(256)) * 16384  # 4 MiB
    wire = frame_header(len(big)) + big
    cuts = [wire[i:i + 1452] for i in range(0, len(wire), 1452)]
    assert trio.run(receive_all, cuts, 37, True) == [big]


@pytest.mark.parametrize("header, message", [
    (b"\x01\x00\x00\x10", "bad frame header 01000010"),
    (b"\x00" + (MAX_RECEIVE + 1).to_bytes(3, "big"),
     f"test announced a {MAX_RECEIVE + 1}-byte message; the limit is {MAX_RECEIVE}"),
])
def test_bad_headers_are_refused(header, message):
    async def main() -> None:
        framed = FramedStream(Pieces([header[:2], header[2:]], 1, True), kind="quic",
                              peer="test")
        with pytest.raises(ProtocolError) as err:
            await framed.receive_message()
        assert str(err.value) == message

    trio.run(main)
