"""The SMB client against the real smbd: round trips, listings, metadata, concurrency."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import trio
import trio.lowlevel

import quicfs
from quicfs.errors import SMBError
from quicfs.smb2.constants import Command
from quicfs.smb2.status import Status

SHARES = ["plain", "signed", "sealed"]
SIZES = [0, 1, 64 * 1024 + 1, 10 * 1024 * 1024]


def opts(samba, extra: str = "") -> str:
    base = f"transport=tcp,username={samba.username},password={samba.password}"
    return f"{base},{extra}" if extra else base


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_frames(share) -> list[bytes]:
    """Every frame the client sends from now on, as it goes onto the transport."""
    frames: list[bytes] = []
    real_send = share.conn.transport.send_message

    async def spy(message):
        frames.append(bytes(message))
        await real_send(message)

    share.conn.transport.send_message = spy
    return frames


@pytest.mark.parametrize("share", SHARES)
async def test_round_trips(samba, share):
    async with quicfs.connect(samba.url(share), opts(samba)) as s:
        for size in SIZES:
            data = os.urandom(size)
            name = f"rt-{size}.bin"
            await s.write_file(name, data)
            back = await s.read_file(name)
            assert len(back) == size
            assert sha(back) == sha(data)
            # The server holds exactly what we sent.
            assert sha(samba.share_path(share).joinpath(name).read_bytes()) == sha(data)


@pytest.mark.slow
@pytest.mark.parametrize("share", SHARES)
async def test_round_trip_200mib(samba, share, tmp_path):
    size = 200 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    sent = 0

    async def source(n: int) -> bytes:
        nonlocal sent
        piece = (block * ((n // len(block)) + 1))[: min(n, size - sent)]
        # Vary every chunk so a misplaced chunk is caught.
        piece = bytes([sent // len(block) % 251]) + piece[1:] if piece else piece
        sent += len(piece)
        digest.update(piece)
        return piece

    async with quicfs.connect(samba.url(share), opts(samba)) as s:
        assert await s.upload(source, "big.bin") == size
        back = hashlib.sha256()

        async def sink(data: bytes) -> None:
            back.update(data)

        assert await s.download("big.bin", sink) == size
    assert back.hexdigest() == digest.hexdigest()
    on_disk = hashlib.sha256()
    with open(samba.share_path(share) / "big.bin", "rb") as f:
        while chunk := f.read(1 << 20):
            on_disk.update(chunk)
    assert on_disk.hexdigest() == digest.hexdigest()
    os.unlink(samba.share_path(share) / "big.bin")


async def test_smbclient_reads_what_we_wrote_and_back(samba, tmp_path):
    data = os.urandom(300_001)
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        await s.write_file("ours.bin", data)
    local = tmp_path / "theirs.bin"
    proc = samba.smbclient("plain", f"get ours.bin {local}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sha(local.read_bytes()) == sha(data)

    other = os.urandom(123_457)
    src = tmp_path / "up.bin"
    src.write_bytes(other)
    proc = samba.smbclient("plain", f"put {src} fromsmbclient.bin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        assert sha(await s.read_file("fromsmbclient.bin")) == sha(other)


async def test_large_directory_listed_completely(samba):
    root = samba.mkdir("plain", "big-dir")
    names = {f"file-{i:05d}-{'x' * (i % 40)}.txt" for i in range(5000)}
    for n in names:
        (root / n).touch()
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        entries = await s.listdir("big-dir")
    got = [e.name for e in entries]
    assert len(got) == len(set(got)) == 5000
    assert set(got) == names


@pytest.mark.parametrize("share", SHARES)
async def test_metadata_operations(samba, share):
    async with quicfs.connect(samba.url(share), opts(samba)) as s:
        await s.mkdir("meta")
        with pytest.raises(SMBError) as err:
            await s.mkdir("meta")
        assert err.value.status == Status.OBJECT_NAME_COLLISION
        await s.write_file("meta/a.txt", b"hello world")
        st = await s.stat("meta/a.txt")
        assert st.size == 11 and not st.is_dir and st.file_id != 0
        assert (await s.stat("meta")).is_dir

        # rename, then refuse to replace unless asked
        await s.rename("meta/a.txt", "meta/b.txt")
        assert not await s.exists("meta/a.txt")
        await s.write_file("meta/c.txt", b"other")
        with pytest.raises(SMBError) as err:
            await s.rename("meta/b.txt", "meta/c.txt")
        assert err.value.status == Status.OBJECT_NAME_COLLISION
        await s.rename("meta/b.txt", "meta/c.txt", replace=True)
        assert await s.read_file("meta/c.txt") == b"hello world"

        # truncate shrinks and grows (with zeros)
        await s.truncate("meta/c.txt", 5)
        assert await s.read_file("meta/c.txt") == b"hello"
        await s.truncate("meta/c.txt", 8)
        assert await s.read_file("meta/c.txt") == b"hello\0\0\0"

        # timestamps
        mtime = 1_600_000_000_123_456_700
        atime = 1_500_000_000_000_000_000
        await s.set_times("meta/c.txt", atime_ns=atime, mtime_ns=mtime)
        st = await s.stat("meta/c.txt")
        assert st.mtime_ns == mtime
        assert st.atime_ns == atime
        assert os.stat(samba.share_path(share) / "meta" / "c.txt").st_mtime_ns == mtime

        # delete: a non-empty directory refuses, files go, then the directory
        with pytest.raises(SMBError) as err:
            await s.rmdir("meta")
        assert err.value.status == Status.DIRECTORY_NOT_EMPTY
        with pytest.raises(SMBError) as err:
            await s.remove("meta")
        assert err.value.status == Status.FILE_IS_A_DIRECTORY
        await s.remove("meta/c.txt")
        await s.rmdir("meta")
        assert not await s.exists("meta")
        assert not (samba.share_path(share) / "meta").exists()


async def test_64_reads_in_flight_on_one_connection(samba):
    data = os.urandom(64 * 65536)
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        await s.write_file("many.bin", data)
        results: dict[int, bytes] = {}
        peak = 0
        async with s.opened("many.bin") as f:

            async def one(i: int) -> None:
                nonlocal peak
                peak = max(peak, s.conn.in_flight)
                results[i] = await f.read(i * 65536, 65536)

            async with trio.open_nursery() as n:
                for i in range(64):
                    n.start_soon(one, i)
                # All 64 were queued before any answer could be processed.
                await trio.lowlevel.checkpoint()
                peak = max(peak, s.conn.in_flight)
        assert b"".join(results[i] for i in range(64)) == data
        assert peak >= 32, f"only {peak} requests were ever in flight together"


async def test_compound_round_trip(samba):
    """stat() is CREATE + QUERY_INFO + CLOSE in one frame: three messages, one round trip."""
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        await s.write_file("cmp.txt", b"x" * 77)
        frames = record_frames(s)
        st = await s.stat("cmp.txt")
        assert st.size == 77
        assert len(frames) == 1
        from quicfs.smb2.header import Header, split_compound

        commands = [Header.unpack(m).command for m in split_compound(frames[0])]
        assert commands == [Command.CREATE, Command.QUERY_INFO, Command.CLOSE]


async def test_missing_file_and_directory_as_file(samba):
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        with pytest.raises(SMBError) as err:
            await s.read_file("no/such/file")
        assert err.value.status == Status.OBJECT_PATH_NOT_FOUND
        with pytest.raises(SMBError) as err:
            await s.read_file("nosuchfile")
        assert err.value.status == Status.OBJECT_NAME_NOT_FOUND
        await s.mkdir("adir")
        with pytest.raises(SMBError) as err:
            await s.read_file("adir")
        assert err.value.status == Status.FILE_IS_A_DIRECTORY
        await s.rmdir("adir")


async def test_sealed_share_is_encrypted_on_the_wire(samba):
    async with quicfs.connect(samba.url("sealed"), opts(samba)) as s:
        assert s.tree.encrypt
        frames = record_frames(s)
        secret = b"very secret payload " * 100
        await s.write_file("secret.txt", secret)
        assert frames and all(f[:4] == b"\xfdSMB" for f in frames)
        assert not any(b"very secret" in f for f in frames)
        assert await s.read_file("secret.txt") == secret


async def test_seal_option_encrypts_plain_share(samba):
    async with quicfs.connect(samba.url("plain"), opts(samba, "seal")) as s:
        assert s.session.encrypt_data and s.tree.encrypt
        await s.write_file("sealed-by-client.txt", b"abc")
        assert await s.read_file("sealed-by-client.txt") == b"abc"


async def test_connection_reports_time(samba):
    start = time.monotonic()
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        assert s.transport == "tcp"
        assert s.conn.params is not None and s.conn.params.dialect == 0x0311
    assert time.monotonic() - start < 10


async def test_blocking_lock_goes_async_and_cancel_cancels_it(samba):
    """A conflicting lock without FAIL_IMMEDIATELY is answered STATUS_PENDING (interim,
    3.3.4.2); cancelling the waiting task sends CANCEL and the connection stays usable."""
    async with quicfs.connect(samba.url("plain"), opts(samba)) as s:
        await s.write_file("locked.bin", b"x" * 100)
        async with s.opened("locked.bin", "r+") as a, s.opened("locked.bin", "r+") as b:
            await a.lock(0, 10)
            with pytest.raises(SMBError) as err:
                await b.lock(0, 10)  # fails at once
            assert err.value.status in (Status.LOCK_NOT_GRANTED, Status.FILE_LOCK_CONFLICT)
            with trio.move_on_after(1.0) as scope:
                await b.lock(5, 10, wait=True)
            assert scope.cancelled_caught
            await s.conn.echo(s.session.keys)
            await a.unlock(0, 10)
            await b.lock(0, 10)  # now free
            await b.unlock(0, 10)
        assert await s.read_file("locked.bin") == b"x" * 100
