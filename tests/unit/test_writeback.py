"""WriteBehind against a server that answers WRITEs after random delays, so concurrent
WRITEs complete in any order, as Samba's thread pool may complete them.

The delays are on trio's autojump clock (each test takes ``autojump_clock``): time moves
only when every task waits, so the order they make is the same however busy the machine
is, and costs no real time."""

from __future__ import annotations

import random

import trio

from quicfs.fs.writeback import WriteBehind


class SlowServer:
    """An open whose WRITEs land after a random delay; ``image`` is the file."""

    max_write = 1 << 20

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.image = bytearray()

    async def write(self, offset: int, data: bytes) -> int:
        await trio.sleep(self.random.random() * 0.01)
        end = offset + len(data)
        if len(self.image) < end:
            self.image += bytes(end - len(self.image))
        self.image[offset:end] = data
        return len(data)


async def test_concurrent_writers_lose_nothing(autojump_clock):
    """AIO-style: many writes to separate places at once, the gather buffer in play."""
    server = SlowServer(1)
    expected = bytearray(64 * 4096)
    async with trio.open_nursery() as nursery:
        writer = WriteBehind(server, nursery, gather=8192, depth=2)  # type: ignore[arg-type]

        async def one(block: int) -> None:
            await trio.sleep(server.random.random() * 0.005)
            data = bytes([block % 251 + 1]) * 4096
            await writer.write(block * 4096, data)

        async with trio.open_nursery() as writers:
            for block in range(64):
                expected[block * 4096:(block + 1) * 4096] = bytes([block % 251 + 1]) * 4096
                writers.start_soon(one, block)
        await writer.drain()
    assert server.image == expected


def random_writes(r: random.Random, count: int):
    """``count`` writes of 1..4095 bytes at random places below 16 KiB, each write's
    bytes its own."""
    for i in range(count):
        offset, size = r.randrange(0, 12288), r.randrange(1, 4096)
        yield i, offset, bytes([i % 255 + 1]) * size


async def test_overlapping_writes_land_in_the_order_made(autojump_clock):
    """The same bytes rewritten again and again, non-contiguously: the last write wins
    although the server may finish concurrent WRITEs in any order."""
    for seed in range(5):
        server = SlowServer(seed)
        expected = bytearray(16384)
        top = 0
        r = random.Random(seed)
        async with trio.open_nursery() as nursery:
            writer = WriteBehind(server, nursery, gather=4096, depth=4)  # type: ignore[arg-type]
            for _, offset, data in random_writes(r, 200):
                expected[offset:offset + len(data)] = data
                top = max(top, offset + len(data))
                await writer.write(offset, data)
            await writer.drain()
        assert server.image == expected[:top]


async def test_peek_gives_what_the_server_will_have(autojump_clock):
    """At any moment, a range covered by writes still held here reads (peek) as the
    file will be once they land; a range with a gap is not answered."""
    for seed in range(5):
        server = SlowServer(seed)
        expected = bytearray(16384)
        r = random.Random(seed)
        answered = 0
        async with trio.open_nursery() as nursery:
            writer = WriteBehind(server, nursery, gather=4096, depth=4)  # type: ignore[arg-type]
            for i, offset, data in random_writes(r, 300):
                expected[offset:offset + len(data)] = data
                await writer.write(offset, data)
                start = r.randrange(0, 16000)
                end = start + r.randrange(1, 4096)
                seen = writer.peek(start, end)
                touched = writer.overlaps(start, end)
                if seen is not None:
                    answered += 1
                    assert touched
                    assert seen == bytes(expected[start:end]), (seed, i, start, end)
            await writer.drain()
            assert not writer.overlaps(0, 1 << 20)
            assert writer.peek(0, 16) is None  # nothing held: ask the server
        assert answered > 20


async def test_many_small_writes_in_flight(autojump_clock):
    """Scattered small writes (a page apart) do not queue behind a count meant for
    large runs: with four 1 MiB runs' worth of room, dozens of them are in flight."""
    class Counting(SlowServer):
        busy = peak = 0

        async def write(self, offset: int, data: bytes) -> int:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                return await super().write(offset, data)
            finally:
                self.busy -= 1

    server = Counting(7)
    async with trio.open_nursery() as nursery:
        writer = WriteBehind(server, nursery)  # type: ignore[arg-type]
        for page in range(200):
            await writer.write(page * 4096, b"x" * 8)
        await writer.drain()
    assert 32 <= server.peak <= 64
    assert all(server.image[p * 4096:p * 4096 + 8] == b"x" * 8 for p in range(200))
