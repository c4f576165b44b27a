"""InodeIO, the one place reads meet writes on their way (fs/inodeio.py), against an open
whose file is a byte string here: each test makes a read-ahead chunk and a write meet,
and checks the bytes a read returns and what went to the server for them.

A read of what a write still gathers is answered from the write-behind with nothing
sent; a write is laid over the chunks read ahead; a chunk the server answers while a
write is on its way gets that write laid over it; a write that fails drops the chunks it
was laid over; two handles' writes on their way keep no chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

from quicfs.fs.handles import FileHandle, HandleTable
from quicfs.fs.readahead import ReadAhead
from quicfs.fs.writeback import WriteBehind

CHUNK = 65536
INODE = 5


class File:
    """The server's copy of one file, and the READs and WRITEs it was sent."""

    def __init__(self, size: int) -> None:
        self.image = bytearray(i % 251 for i in range(size))
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, bytes]] = []
        #: While set, the next READ waits for it.
        self.hold_read: trio.Event | None = None
        self.fail_writes = False


class FakeOpen:
    """One SMB Open of ``file`` (what ReadAhead and WriteBehind ask of client.Open)."""

    max_read = max_write = 1 << 20
    name = "f"

    def __init__(self, file: File, size_hint: int | None = None) -> None:
        self.file = file
        self.size = len(file.image) if size_hint is None else size_hint

    def take_head(self) -> None:
        return None

    async def read(self, offset: int, length: int) -> bytes:
        self.file.reads.append((offset, length))
        hold, self.file.hold_read = self.file.hold_read, None
        if hold is not None:
            await hold.wait()
        return bytes(self.file.image[offset:offset + length])

    async def write(self, offset: int, data: bytes) -> int:
        await trio.lowlevel.checkpoint()
        if self.file.fail_writes:
            raise OSError(28, "No space left on device")
        self.file.writes.append((offset, bytes(data)))
        end = offset + len(data)
        self.file.image.extend(bytes(max(0, end - len(self.file.image))))
        self.file.image[offset:end] = data
        return len(data)


@asynccontextmanager
async def mount() -> AsyncIterator[tuple[HandleTable, trio.Nursery]]:
    """A handle table, and a nursery for read-ahead and write-behind (ended after)."""
    async with trio.open_nursery() as nursery:
        yield HandleTable(), nursery
        nursery.cancel_scope.cancel()


def opened(table: HandleTable, nursery: trio.Nursery, file: File, fh: int,
           size_hint: int | None = None, gather: int = 1 << 20) -> FileHandle:
    smb = FakeOpen(file, size_hint)
    handle = FileHandle(fh, INODE, smb, None, True, False,  # type: ignore[arg-type]
                        ReadAhead(smb, nursery, chunk=CHUNK),  # type: ignore[arg-type]
                        WriteBehind(smb, nursery, gather=gather))  # type: ignore[arg-type]
    table.add(handle)
    return handle


async def test_gathered_bytes_are_read_from_the_write_behind_and_laid_over_the_chunk():
    """A chunk is read ahead; a write of 3 bytes in it is gathered, not sent. Read back
    exactly, the bytes come from the write-behind: no WRITE goes out for the read. A read
    that covers more than the write sends it first, then comes from the chunk read ahead
    before the write, which must hold the written bytes (laid over it), since nothing is
    asked of the server again."""
    file = File(8192)
    old = bytes(file.image)
    async with mount() as (table, nursery):
        handle = opened(table, nursery, file, 1)
        io = table.io(INODE)
        assert await io.read(handle, 0, 4096, 8192) == old[:4096]
        assert file.reads == [(0, CHUNK)]

        assert await io.write(handle, 100, b"NEW") == 3
        assert file.writes == []
        assert await io.read(handle, 100, 3, 8192) == b"NEW"
        assert file.writes == []  # answered from the write-behind, nothing sent

        want = old[:100] + b"NEW" + old[103:]
        assert await io.read(handle, 96, 16, 8192) == want[96:112]
        assert file.writes == [(100, b"NEW")]  # sent before a read it only partly covers
        assert await io.read(handle, 0, 8192, 8192) == want
        assert file.reads == [(0, CHUNK)]  # the chunk, with the write laid over it


async def test_a_chunk_the_server_answers_before_a_gathered_write_gets_it_laid_over():
    """A write is gathered; a read of other bytes of the file is read ahead at once (the
    write need not go first), and the server's chunk lacks the write. Once the write is
    sent, a read of its bytes is answered from that chunk: it holds them."""
    file = File(8192)
    old = bytes(file.image)
    async with mount() as (table, nursery):
        handle = opened(table, nursery, file, 1)
        io = table.io(INODE)
        await io.write(handle, 100, b"NEW")
        assert await io.read(handle, 4000, 10, 8192) == old[4000:4010]
        assert file.reads == [(0, CHUNK)] and file.writes == []
        await io.drain()
        assert file.writes == [(100, b"NEW")]
        assert await io.read(handle, 96, 10, 8192) == old[96:100] + b"NEW" + old[103:106]
        assert file.reads == [(0, CHUNK)]


async def test_a_write_made_while_a_read_waits_is_laid_over_the_chunks_it_asks_for_after():
    """The size known at open says the file ends in its first chunk, so a read across
    the end of that chunk asks for the next one only once the first has come back. A
    write to that next chunk, made while the first was on its way, is not on the server
    yet: the next chunk, asked for after it, must have it laid over it."""
    file = File(2 * CHUNK)
    old = bytes(file.image)
    async with mount() as (table, nursery):
        handle = opened(table, nursery, file, 1, size_hint=10)
        io = table.io(INODE)
        file.hold_read = held = trio.Event()
        got: list[bytes] = []

        async def read() -> None:
            got.append(await io.read(handle, CHUNK - 5, 10, None))

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert file.reads == [(0, CHUNK)]  # the next chunk not asked for yet
        await io.write(handle, CHUNK + 2, b"NEW")
        assert file.writes == []
        held.set()
        await trio.testing.wait_all_tasks_blocked()
        assert file.reads == [(0, CHUNK), (CHUNK, CHUNK)]
        assert got == [old[CHUNK - 5:CHUNK + 2] + b"NEW"]


async def test_a_write_that_fails_drops_the_chunks_it_was_laid_over():
    """A write laid over a chunk read ahead, whose WRITE then fails, was never made: the
    chunk goes, and the next read asks the server for the file as it is."""
    file = File(8192)
    old = bytes(file.image)
    async with mount() as (table, nursery):
        handle = opened(table, nursery, file, 1, gather=4096)
        io = table.io(INODE)
        assert await io.read(handle, 0, 10, 8192) == old[:10]
        file.fail_writes = True
        await io.write(handle, 0, b"X" * 4096)  # a whole run: sent in the background
        assert handle.writer is not None
        await trio.testing.wait_all_tasks_blocked()
        assert handle.writer.error is not None
        with pytest.raises(OSError, match="No space left"):
            await io.write(handle, 5000, b"Y")  # told the first one's error
        assert await io.read(handle, 0, 10, 8192) == old[:10]
        assert file.reads == [(0, CHUNK), (0, CHUNK)]


async def test_two_handles_writes_on_their_way_keep_no_chunk():
    """Two handles' gathered writes land on the server in either order: a chunk read
    while both are on their way serves the read that asked for it and is not kept."""
    file = File(8192)
    old = bytes(file.image)
    async with mount() as (table, nursery):
        one, two = opened(table, nursery, file, 1), opened(table, nursery, file, 2)
        io = table.io(INODE)
        await io.write(one, 100, b"AAA")
        await io.write(two, 200, b"BBB")
        assert await io.read(one, 4000, 10, 8192) == old[4000:4010]
        assert await io.read(one, 4010, 10, 8192) == old[4010:4020]
        assert file.reads == [(0, CHUNK), (0, CHUNK)]


async def test_a_second_handles_write_during_a_read_keeps_no_chunk_asked_for_after():
    """While a read waits for its first chunk, two handles write overlapping bytes of
    the next one: the server may apply them in either order (here, not the order they
    were made), so the next chunk, asked for after them, is not kept to be read again."""
    file = File(2 * CHUNK)
    async with mount() as (table, nursery):
        one = opened(table, nursery, file, 1, size_hint=10)
        two = opened(table, nursery, file, 2)
        io = table.io(INODE)
        file.hold_read = held = trio.Event()
        nursery.start_soon(io.read, one, CHUNK - 5, 10, None)
        await trio.testing.wait_all_tasks_blocked()
        await io.write(two, CHUNK + 2, b"BBB")
        await io.write(one, CHUNK + 3, b"AAA")
        held.set()
        await trio.testing.wait_all_tasks_blocked()
        assert file.reads == [(0, CHUNK), (CHUNK, CHUNK)]
        await io.drain()  # one's WRITE, then two's: not the order they were made
        assert file.image[CHUNK + 2:CHUNK + 6] == b"BBBA"
        assert await io.read(one, CHUNK + 2, 4, None) == b"BBBA"
        assert len(file.reads) == 3
