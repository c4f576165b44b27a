"""Sessions the server expires (issue 24 section 2): renewed on the same connection with
the same SessionId, the failed requests sent again, the application told nothing.

Samba expires a session only when a Kerberos ticket behind it ends (an NTLM session never
expires: gensec's NTLMSSP has no expiry time), so these tests use our own server
(tests/support/hostile_smb.py) over real TCP, which expires sessions when told to or
after a number of requests, checks that a re-authentication is signed with the session's
key and carries its SessionId, and counts what it saw.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

import quicfs
from quicfs.client.session import RenewalFailed
from quicfs.errors import SMBError
from quicfs.smb2.status import Status
from tests.support.hostile_smb import (
    PASSWORD,
    USER,
    Behaviour,
    HostileServer,
    Node,
    directory,
    file,
)

DATA = os.urandom(3 * 65536 + 4321)
SMALL = {f"small-{i}.bin": os.urandom(1000 + i) for i in range(8)}
REFUSED = ("session on 127.0.0.1 expired and could not be renewed: logon failure for "
           f"user '{USER}': wrong user name or password")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree() -> Node:
    return directory("", file("data.bin", DATA),
                     *(file(name, data) for name, data in SMALL.items()))


@pytest.fixture
def serve() -> Iterator[Callable[..., HostileServer]]:
    """``serve(**behaviour)``: our server, started (it is stopped from outside trio,
    after the test). One that cannot start fails the test, never skips it."""
    with contextlib.ExitStack() as stack:
        def start(**behaviour: object) -> HostileServer:
            try:
                return stack.enter_context(
                    HostileServer(tree(), Behaviour(**behaviour)))  # type: ignore[arg-type]
            except Exception as exc:
                pytest.fail(f"cannot start the hostile SMB server: {exc}", pytrace=False)

        yield start


def renewals(server: HostileServer) -> list[tuple[int, int, bool, str]]:
    return [(r.session_id, r.legs, r.signed, r.outcome) for r in server.renewals]


async def read_all_at_once(share) -> dict[str, bytes]:
    """Every file of SMALL, read by eight tasks at once."""
    got: dict[str, bytes] = {}

    async def read(name: str) -> None:
        got[name] = await share.read_file(name)

    async with trio.open_nursery() as nursery:
        for name in SMALL:
            nursery.start_soon(read, name)
    return got


def _credentials_file(path: Path, user: str, password: str) -> str:
    path.write_text(f"username={user}\npassword={password}\n")
    path.chmod(0o600)
    return str(path)


async def test_a_read_after_the_expiry_is_byte_exact_after_one_renewal(serve):
    """(a) The server expires the session between two reads: the second read's CREATE
    meets STATUS_NETWORK_SESSION_EXPIRED, the session is authenticated again (one
    NTLM exchange, two signed SESSION_SETUPs carrying the old SessionId), and the read
    returns every byte. Before the change the read failed with SMBError
    (STATUS_NETWORK_SESSION_EXPIRED, EIO at a mount)."""
    server = serve()
    async with quicfs.connect(server.url, server.options) as share:
        sid = share.session.session_id
        assert sha(await share.read_file("data.bin")) == sha(DATA)
        setups = server.seen["SESSION_SETUP"]
        assert setups == 2 and server.renewals == []
        server.expire_sessions()
        assert sha(await share.read_file("data.bin")) == sha(DATA)
        assert server.expired_answers >= 1
        assert renewals(server) == [(sid, 2, True, "ok")]
        assert server.seen["SESSION_SETUP"] == setups + 2
        assert share.session.session_id == sid
        assert share.uplink is not None
        stats = share.uplink.snapshot()
        assert stats["session_renewals"] == 1 and stats["reconnects"] == 0
        # And the next read goes straight through: nothing expired, nothing renewed.
        expired = server.expired_answers
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        assert server.expired_answers == expired and len(server.renewals) == 1
    assert not server.errors


async def test_an_open_handle_reads_on_across_the_expiry(serve):
    """(a) A file opened before the expiry is read after it through the same handle
    (a lone READ, not a compound): the READ is sent again once the session is
    renewed, and the bytes are the file's."""
    server = serve()
    async with quicfs.connect(server.url, server.options) as share:
        sid = share.session.session_id
        async with share.opened("data.bin", "r") as handle:
            first = await handle.read(0, 65536)
            server.expire_sessions()
            rest = await handle.read(65536, len(DATA))
        assert sha(first + rest) == sha(DATA)
        assert renewals(server) == [(sid, 2, True, "ok")]
    assert not server.errors


async def test_concurrent_requests_at_the_expiry_cost_one_renewal(serve):
    """(b) Eight reads in flight together all meet the expiry: one renewal serves them
    all (the others wait for it), and each gets its own file's bytes."""
    server = serve()
    async with quicfs.connect(server.url, server.options) as share:
        sid = share.session.session_id
        # Credits for eight compounds at once, so that all are sent together.
        for name in list(SMALL)[:2]:
            assert await share.read_file(name) == SMALL[name]
        server.expire_sessions()
        assert await read_all_at_once(share) == SMALL
        # Every one of the eight met the expiry (a CREATE compound each, whose
        # three members were each answered so), yet one re-authentication.
        assert server.expired_answers >= len(SMALL)
        assert renewals(server) == [(sid, 2, True, "ok")]
        assert server.seen["SESSION_SETUP"] == 4
    assert not server.errors


@pytest.mark.parametrize("how", ["password changed", "server refuses"])
async def test_a_refused_renewal_is_one_clear_error_and_no_loop(serve, how):
    """(c) The server will not take our credentials again (the password changed, or it
    refuses the renewal): the read fails with RenewalFailed, one line naming the user
    and the reason, errno EACCES; the server saw one renewal (two SESSION_SETUPs), and
    the calls after it fail at once with the same error, nothing more sent."""
    server = serve(refuse_renewal=how == "server refuses")
    async with quicfs.connect(server.url, server.options) as share:
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        if how == "password changed":
            server.set_password(PASSWORD + "-new")
        server.expire_sessions()
        with pytest.raises(RenewalFailed) as caught:
            await share.read_file("data.bin")
        assert str(caught.value) == REFUSED
        assert caught.value.errno == errno.EACCES
        assert [r.outcome for r in server.renewals] == ["LOGON_FAILURE"]
        assert server.seen["SESSION_SETUP"] == 4
        sent = sum(server.seen.values())
        for name in SMALL:
            with pytest.raises(RenewalFailed, match=r"^session on 127\.0\.0\.1 expired"):
                await share.read_file(name)
        assert sum(server.seen.values()) == sent  # failed at once, nothing sent
    assert server.seen["SESSION_SETUP"] == 4
    assert not server.errors


async def test_a_renewal_without_credentials_to_give_is_ekeyexpired(serve, tmp_path):
    """(c) The credentials are gone by the time the session expires (here the
    credentials file became readable by others, which quicfs refuses to read; for
    Kerberos, a ticket cache without a valid ticket): RenewalFailed with EKEYEXPIRED
    and the reason in its one line, no SESSION_SETUP sent for it."""
    server = serve()
    path = tmp_path / "creds"
    creds = _credentials_file(path, USER, PASSWORD)
    async with quicfs.connect(server.url, f"transport=tcp,credentials={creds}") as share:
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        path.chmod(0o644)
        server.expire_sessions()
        with pytest.raises(RenewalFailed) as caught:
            await share.read_file("small-1.bin")
        assert str(caught.value) == (
            "session on 127.0.0.1 expired and could not be renewed: credentials file "
            f"{path} is readable by group or others (mode 0644); run chmod 600 {path}")
        assert caught.value.errno == errno.EKEYEXPIRED
        assert server.seen["SESSION_SETUP"] == 2 and server.renewals == []
    assert not server.errors


async def test_credentials_restored_bring_the_session_back_with_one_renewal(serve, tmp_path):
    """(relogin) The renewal failed for want of credentials (the credentials file
    unusable; for Kerberos an expired ticket): while they stay missing, every call
    fails with EKEYEXPIRED in the local check, nothing sent; once they are back (chmod
    600; kinit), the next read is byte-exact after one renewal of the same session (two
    signed SESSION_SETUPs), and the calls after it go straight through. Before, the
    session stayed failed until a remount."""
    server = serve()
    path = tmp_path / "creds"
    creds = _credentials_file(path, USER, PASSWORD)
    async with quicfs.connect(server.url, f"transport=tcp,credentials={creds}") as share:
        sid = share.session.session_id
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        path.chmod(0o644)
        server.expire_sessions()
        with pytest.raises(RenewalFailed) as caught:
            await share.read_file("small-1.bin")
        assert caught.value.errno == errno.EKEYEXPIRED
        sent = sum(server.seen.values())
        for name in SMALL:
            with pytest.raises(RenewalFailed, match=r"readable by group or others") as caught:
                await share.read_file(name)
            assert caught.value.errno == errno.EKEYEXPIRED
        path.unlink()  # gone altogether: still local, still nothing sent
        with pytest.raises(RenewalFailed) as caught:
            await share.listdir("")
        assert caught.value.errno == errno.EKEYEXPIRED
        assert sum(server.seen.values()) == sent
        assert server.seen["SESSION_SETUP"] == 2 and server.renewals == []
        _credentials_file(path, USER, PASSWORD)
        assert sha(await share.read_file("data.bin")) == sha(DATA)
        assert renewals(server) == [(sid, 2, True, "ok")]
        assert server.seen["SESSION_SETUP"] == 4
        for name, data in SMALL.items():
            assert await share.read_file(name) == data
        assert server.seen["SESSION_SETUP"] == 4
        assert share.session.session_id == sid
        assert share.uplink is not None
        stats = share.uplink.snapshot()
        assert stats["session_renewals"] == 1 and stats["reconnects"] == 0
    assert not server.errors


async def test_concurrent_calls_after_credentials_return_cost_one_renewal(serve, tmp_path):
    """(relogin) Eight reads at once after the credentials came back: one attempt (the
    others wait for it), one renewal, every file byte-exact."""
    server = serve()
    path = tmp_path / "creds"
    creds = _credentials_file(path, USER, PASSWORD)
    async with quicfs.connect(server.url, f"transport=tcp,credentials={creds}") as share:
        for name in list(SMALL)[:2]:
            assert await share.read_file(name) == SMALL[name]
        path.chmod(0o644)
        server.expire_sessions()
        with pytest.raises(RenewalFailed):
            await share.read_file("data.bin")
        path.chmod(0o600)
        assert await read_all_at_once(share) == SMALL
        assert [r.outcome for r in server.renewals] == ["ok"]
        assert server.seen["SESSION_SETUP"] == 4
    assert not server.errors


async def test_a_connection_lost_during_the_renewal_is_a_reconnect_not_a_refusal(serve):
    """The server drops the connection in the middle of the renewal: that is a lost
    connection, not refused credentials. The Link reconnects (a new session naming
    the old one as PreviousSessionId) and the read goes through, byte-exact; no
    RenewalFailed."""
    server = serve(drop_at_renewal=True)
    async with quicfs.connect(server.url, server.options) as share:
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        server.expire_sessions()
        assert sha(await share.read_file("data.bin")) == sha(DATA)
        assert [r.outcome for r in server.renewals] == ["dropped"]
        assert share.uplink is not None
        stats = share.uplink.snapshot()
        assert stats["reconnects"] == 1 and stats["session_renewals"] == 0
        assert server.seen["SESSION_SETUP"] == 2 + 1 + 2
    assert not server.errors


def test_quicfs_get_says_one_line_when_the_renewal_is_refused(serve):
    """(c) At the CLI: `quicfs get` of a file whose session expires mid-way (after two
    requests: TREE_CONNECT and the CREATE) and cannot be renewed prints one line and
    exits 1; no traceback, no 'internal error'."""
    server = serve(expire_every=2, refuse_renewal=True)
    proc = subprocess.run(
        [sys.executable, "-m", "quicfs.cli.main", "get", f"{server.url}/data.bin", "-",
         "-o", server.options], capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [f"quicfs: {REFUSED}"]
    assert [r.outcome for r in server.renewals] == ["LOGON_FAILURE"]
    assert server.seen["SESSION_SETUP"] == 4
    assert not server.errors


# ---------------------------------------------------------------------- real Samba
# Samba will not expire an NTLM session, but a client may authenticate a live session
# again whenever it likes (3.2.4.2.3.1): what smbd makes of our renewal is tested so.
def _setups(share) -> list[bytes]:
    """The SESSION_SETUPs the client sends from now on, as they go onto the transport."""
    frames: list[bytes] = []
    transport = share.conn.transport
    real_send, real_try = transport.send_message, transport.try_send_message

    def note(message) -> None:
        data = bytes(message)
        if data[:4] == b"\xfdSMB":
            frames.append(b"sealed")
        elif data[:4] == b"\xfeSMB" and int.from_bytes(data[12:14], "little") == 1:
            frames.append(data)

    async def send(message):
        note(message)
        await real_send(message)

    def try_send(message):
        sent = real_try(message)
        if sent:
            note(message)
        return sent

    transport.send_message, transport.try_send_message = send, try_send
    return frames


@pytest.mark.parametrize("extra", ["", ",seal"])
async def test_samba_takes_our_renewal_of_a_live_session(samba, tmp_path, extra):
    """Against smbd: the renewal (two SESSION_SETUPs with the session's SessionId,
    signed, or sealed under `seal`) succeeds, the keys stay, and the share serves on,
    byte-exact."""
    creds = _credentials_file(tmp_path / "creds", samba.username, samba.password)
    data = os.urandom(200_000)
    async with quicfs.connect(samba.url("plain"),
                              f"transport=tcp,credentials={creds}{extra}") as share:
        session = share.session
        sid, keys = session.session_id, session.keys
        await share.write_file("renewed.bin", data)
        frames = _setups(share)
        await session.renew(session.renewals)
        assert session.renewals == 1
        assert session.session_id == sid and session.keys == keys
        assert len(frames) == 2
        if extra:
            assert frames == [b"sealed", b"sealed"]
        else:
            for frame in frames:
                assert int.from_bytes(frame[40:48], "little") == sid
                assert int.from_bytes(frame[16:20], "little") & 0x8  # SMB2_FLAGS_SIGNED
        assert sha(await share.read_file("renewed.bin")) == sha(data)
        assert sha((samba.share_path("plain") / "renewed.bin").read_bytes()) == sha(data)


async def test_samba_refuses_a_renewal_with_a_changed_password(samba, tmp_path):
    """Against smbd: the credentials file now holds a wrong password; the renewal is
    refused (a signed LOGON_FAILURE), RenewalFailed says so in one line with EACCES,
    and the calls after it fail at once with it (smbd has ended the session)."""
    path = tmp_path / "creds"
    creds = _credentials_file(path, samba.username, samba.password)
    async with quicfs.connect(samba.url("plain"), f"transport=tcp,credentials={creds}") as share:
        session = share.session
        _credentials_file(path, samba.username, samba.password + "-changed")
        frames = _setups(share)
        with pytest.raises(RenewalFailed) as caught:
            await session.renew(session.renewals)
        assert str(caught.value) == (
            "session on 127.0.0.1 expired and could not be renewed: logon failure for "
            f"user '{samba.username}': wrong user name or password")
        assert caught.value.errno == errno.EACCES
        assert len(frames) == 2
        with pytest.raises(RenewalFailed):
            await share.listdir("")
        assert len(frames) == 2


async def test_samba_takes_our_renewal_over_quic_through_the_gateway(samba, gateway):
    """Over QUIC (our gateway in front of smbd; SMB signing kept, SMB encryption left
    to QUIC): the renewal goes through, two signed SESSION_SETUPs with the session's
    SessionId, and the share serves on byte-exact."""
    data = os.urandom(150_000)
    async with quicfs.connect(gateway.url("plain"), gateway.options(samba)) as share:
        assert share.transport == "quic"
        session = share.session
        sid, keys = session.session_id, session.keys
        await share.write_file("renewed-quic.bin", data)
        frames = _setups(share)
        await session.renew(session.renewals)
        assert session.renewals == 1 and session.keys == keys
        assert len(frames) == 2
        for frame in frames:
            assert int.from_bytes(frame[40:48], "little") == sid
            assert int.from_bytes(frame[16:20], "little") & 0x8  # SMB2_FLAGS_SIGNED
        assert sha(await share.read_file("renewed-quic.bin")) == sha(data)


def test_quicfs_get_of_a_file_whose_session_keeps_expiring_is_byte_exact(serve):
    """`quicfs get` while the server expires the session every 3 requests: the output
    is the file, exit 0, nothing on stderr, and every renewal was signed, on the one
    session."""
    server = serve(expire_every=3, max_read_size=65536)
    proc = subprocess.run(
        [sys.executable, "-m", "quicfs.cli.main", "get", f"{server.url}/data.bin", "-",
         "-o", server.options + ",rsize=65536"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert sha(proc.stdout) == sha(DATA)
    assert len(server.renewals) >= 2  # TREE_CONNECT, CREATE, 4 READs, CLOSE at the least
    assert len({r.session_id for r in server.renewals}) == 1
    assert all((r.legs, r.signed, r.outcome) == (2, True, "ok") for r in server.renewals)
    assert not server.errors


# ------------------------------------------------------------ a reconnect refused
async def test_a_reconnect_whose_password_is_refused_is_not_tried_again(serve, tmp_path):
    """The password changed on the server while the connection was down: the reconnect's
    login is refused, and no other login is tried with the same password (each would
    count toward locking the account out; before, the reconnect tried again every 2 s
    for as long as the mount lived). Calls fail with the refusal, sending nothing; once
    the credentials file holds the new password, the next call reconnects and reads
    byte-exact."""
    server = serve()
    path = tmp_path / "creds"
    creds = _credentials_file(path, USER, PASSWORD)
    async with quicfs.connect(server.url, f"transport=tcp,credentials={creds}") as share:
        assert await share.read_file("small-0.bin") == SMALL["small-0.bin"]
        server.set_password("Changed-elsewhere-2")
        server.drop_connections()
        logins = server.seen["SESSION_SETUP"]
        with trio.fail_after(20):
            for name in list(SMALL)[1:6]:
                with pytest.raises(SMBError) as refused:
                    await share.read_file(name)
                assert refused.value.status == Status.LOGON_FAILURE
                assert refused.value.errno == errno.EACCES
            await trio.sleep(3)  # the watch, which brings a lost connection back itself
        assert server.seen["SESSION_SETUP"] - logins == 2  # one NTLM login, refused
        _credentials_file(path, USER, "Changed-elsewhere-2")
        with trio.fail_after(20):
            assert sha(await share.read_file("data.bin")) == sha(DATA)
        assert server.seen["SESSION_SETUP"] - logins == 4
        assert share.uplink is not None and share.uplink.snapshot()["reconnects"] == 1
    assert not server.errors
