"""Each defence of `quicfs gateway` on the open internet (docs/gateway.md, issue 19) proved
on real parts, by a test that fails when that defence is switched off: the caps
(--max-connections, --max-per-address, --max-handshakes) and the handshake timeout, the
rules of Version Negotiation, the backend dialled only for an SMB2 NEGOTIATE, the two
timeouts of the splice, the log line of a failed handshake and the periodic summary.

Most run the real `quicfs gateway` process (its flags, its log file, its exit code) in
front of the test smbd, or of a TCP listener of the test's own that counts what the
gateway dials; the splice's two timeouts, which have no flag, run a real gateway in this
process with the constant lowered. Clients are real QUIC clients on loopback: quicfs's
own (SMB sessions that read a file), qh3's (tests/support/attacker.py) and aioquic's.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
import trio
from qh3.quic import events

import quicfs
import quicfs.gateway
from quicfs.cert import write_self_signed
from quicfs.gateway import Gateway
from quicfs.transport.quic.admission import Limits
from quicfs.transport.quic.client import wait_for_any
from tests.conftest import running_gateway
from tests.integration.test_gateway_limits import client as connected
from tests.support import attacker
from tests.support.aioquic_client import AioquicClient
from tests.support.gateway import GatewayProcess

#: What the gateway process writes before each log line (cli/main.py).
LOG = "quicfs: "
#: A QUIC version nobody speaks (a reserved one would do as well).
UNKNOWN_VERSION = 0x1A2A3A4A
#: The file the real client reads through the gateway.
SMALL = "defences-256k.bin"
NOT_NEGOTIATE = "the first message is not an SMB2 NEGOTIATE"
#: An SMB2 header and the smallest NEGOTIATE response body (MS-SMB2 2.2.4), framed.
NEGOTIATE_ANSWER = 4 + 64 + 65


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ============================================================================ fixtures
@pytest.fixture
def start_gateway(samba, tmp_path) -> Iterator[Callable[..., GatewayProcess]]:
    """`quicfs gateway` processes for this test alone, in front of the test smbd or of
    ``backend_port``: ``start_gateway(*flags, backend_port=None)``; stopped after it."""
    with ExitStack() as stack:
        roots = iter(range(100))

        def start(*flags: str, backend_port: int | None = None) -> GatewayProcess:
            root = tmp_path / f"gateway{next(roots)}"
            root.mkdir()
            return stack.enter_context(contextmanager(running_gateway)(
                root, backend_port or samba.port, flags))

        yield start


@pytest.fixture(scope="module")
def small(samba) -> Iterator[bytes]:
    """256 KiB of random bytes on the ``plain`` share, owned by the share's user."""
    data = os.urandom(256 * 1024)
    path = samba.share_path("plain") / SMALL
    path.write_bytes(data)
    user = pwd.getpwnam(samba.username)
    os.chown(path, user.pw_uid, user.pw_gid)
    yield data
    path.unlink(missing_ok=True)


@pytest.fixture
def cert(tmp_path):
    return write_self_signed("localhost", tmp_path, extra_names=["127.0.0.1"])


# ============================================================================ helpers
def logged(gw: GatewayProcess, kind: str) -> list[str]:
    """The gateway's log lines that begin with ``kind``, without the "quicfs: " prefix."""
    return [ln[len(LOG):] for ln in gw.log().splitlines() if ln.startswith(LOG + kind)]


async def wait_logged(gw: GatewayProcess, kind: str, *, within: float = 10.0) -> list[str]:
    """The lines of ``kind`` once there is one."""
    deadline = trio.current_time() + within
    while not (lines := logged(gw, kind)):
        assert trio.current_time() < deadline, (
            f"no '{kind}' line in the gateway's log within {within:g} s:\n{gw.log()}")
        await trio.sleep(0.05)
    return lines


@dataclass
class Attempt:
    """A client's try at the gateway."""

    port: int
    got_in: bool
    #: Bytes the gateway sent it.
    heard: int


async def try_connect(port: int, *, within: float, host: str = "127.0.0.1") -> Attempt:
    """A qh3 client from ``host`` tries to connect for ``within`` seconds (sending its
    Initial again as it would), then closes."""
    client = attacker.Qh3Client(("127.0.0.1", port), bind=(host, 0))
    attempt = Attempt(client.local[1], False, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        with trio.move_on_after(within):
            await wait_for_any(client.handshake_done, client.terminated)
        if client.handshake_done.is_set():
            client.close()
            with trio.move_on_after(1):
                await client.terminated.wait()
        nursery.cancel_scope.cancel()
    attempt.got_in, attempt.heard = client.handshake_done.is_set(), client.bytes_received
    return attempt


async def connects_again(port: int, *, within: float) -> Attempt:
    """A client that gets in within ``within`` seconds, trying once a second (a place
    freed by a connection's end is free once the gateway has seen that end)."""
    deadline = trio.current_time() + within
    while True:
        attempt = await try_connect(port, within=1.0)
        if attempt.got_in or trio.current_time() > deadline:
            return attempt


async def first_datagram(sock: socket.socket, *, within: float = 5.0, peek: bool = False
                         ) -> bytes:
    """The first datagram ``sock`` receives (left in its buffer with ``peek``)."""
    with trio.fail_after(within):
        await trio.lowlevel.wait_readable(sock)
    return sock.recv(65536, socket.MSG_PEEK if peek else 0)


async def datagrams(sock: socket.socket, *, quiet: float) -> list[bytes]:
    """What ``sock`` receives until nothing came for ``quiet`` seconds."""
    got = []
    while True:
        with trio.move_on_after(quiet):
            await trio.lowlevel.wait_readable(sock)
            got.append(sock.recv(65536))
            continue
        return got


def udp_socket(rcvbuf: int = 4 << 20) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def read_through(share, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """``share`` reads SMALL byte-exact on the SMB connection it had."""
    conn = share.conn
    assert sha(await share.read_file(SMALL)) == sha(data), "not byte-exact"
    assert share.conn is conn and not conn.closed, "the SMB session reconnected"


class Backend:
    """A TCP listener where the SMB server would be: counts the connections the gateway
    makes, keeps what each sent, answers nothing."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        #: Connections the gateway has closed.
        self.ended = 0

    @property
    def accepted(self) -> int:
        return len(self.received)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        got = bytearray()
        self.received.append(got)
        try:
            async for data in stream:
                got += data
        except trio.BrokenResourceError:
            pass
        self.ended += 1


# ============================================================================ 1. the caps
async def test_max_connections_refuses_one_more(start_gateway, samba, small):
    """--max-connections 2: two SMB sessions through the gateway, a third client gets
    no answer at all (its Initials dropped, one log line), the two still read; once one
    of them ends, a client gets in again."""
    gw = start_gateway("--max-connections", "2")
    with trio.fail_after(60):
        async with quicfs.connect(gw.url("plain"), gw.options(samba)) as one:
            async with quicfs.connect(gw.url("plain"), gw.options(samba)) as two:
                third = await try_connect(gw.port, within=2.0)
                assert not third.got_in and third.heard == 0, (
                    f"a third connection was served: {gw.log()}")
                assert await wait_logged(gw, "refused: --max-connections") == [
                    f"refused: --max-connections reached: from 127.0.0.1:{third.port}"]
                await read_through(one, small)
                await read_through(two, small)
            fourth = await connects_again(gw.port, within=10.0)
            assert fourth.got_in, (
                f"no place freed when a connection ended:\n{gw.log()}")
            await read_through(one, small)
    assert len(logged(gw, "refused: --max-connections")) == 1
    assert gw.stop() == 0


async def test_max_per_address_refuses_one_more_from_that_address(start_gateway, samba,
                                                                   small):
    """--max-per-address 2: two SMB sessions from 127.0.0.1, a third client from there
    gets no answer (one log line), one from 127.0.0.2 gets in; the two still read."""
    gw = start_gateway("--max-per-address", "2")
    with trio.fail_after(60):
        async with quicfs.connect(gw.url("plain"), gw.options(samba)) as one, \
                quicfs.connect(gw.url("plain"), gw.options(samba)) as two:
            third = await try_connect(gw.port, within=2.0)
            assert not third.got_in and third.heard == 0, (
                f"a third connection from 127.0.0.1 was served: {gw.log()}")
            assert await wait_logged(gw, "refused: --max-per-address") == [
                f"refused: --max-per-address reached: from 127.0.0.1:{third.port}"]
            elsewhere = await try_connect(gw.port, within=5.0, host="127.0.0.2")
            assert elsewhere.got_in, (
                f"a client from 127.0.0.2 was refused too:\n{gw.log()}")
            await read_through(one, small)
            await read_through(two, small)
    assert len(logged(gw, "refused: --max-per-address")) == 1
    assert gw.stop() == 0


async def test_max_handshakes_refuses_one_more(start_gateway):
    """--max-handshakes 2: two clients send their ClientHello and say no more, a third
    gets no answer (one log line); the two then finish their handshakes and their SMB2
    NEGOTIATE is answered by the smbd behind."""
    gw = start_gateway("--max-handshakes", "2")
    with trio.fail_after(60):
        held = [attacker.Qh3Client(("127.0.0.1", gw.port)) for _ in range(2)]
        for client in held:
            client.hello()
            await first_datagram(client.sock, peek=True)  # admitted: it was answered
        third = await try_connect(gw.port, within=1.5)
        assert not third.got_in and third.heard == 0, (
            f"a third handshake was served: {gw.log()}")
        assert await wait_logged(gw, "refused: --max-handshakes") == [
            f"refused: --max-handshakes reached: from 127.0.0.1:{third.port}"]
        async with trio.open_nursery() as nursery:
            sids = []
            for client in held:
                nursery.start_soon(client.run)
                with trio.fail_after(5):
                    await client.handshake_done.wait()
                sids.append(client.new_stream())
                assert client.send(sids[-1], attacker.smb2_negotiate())
            with trio.fail_after(10):
                while any(c.received.get(s, 0) < NEGOTIATE_ANSWER  # noqa: ASYNC110
                          for c, s in zip(held, sids, strict=True)):
                    await trio.sleep(0.05)
            assert not any(c.terminated.is_set() for c in held)
            for client in held:
                client.close()
            with trio.move_on_after(2):
                for client in held:
                    await client.terminated.wait()
            nursery.cancel_scope.cancel()
    assert gw.stop() == 0


# ============================================================================ 2. handshake timeout
async def test_a_handshake_that_stops_is_dropped_after_the_timeout(start_gateway):
    """--handshake-timeout 1: a client sends its ClientHello and nothing more. After 1 s
    (not before) the gateway drops it without a word (no CONNECTION_CLOSE in all it
    sent), with one log line naming it and why; nothing is left of it: its connection
    id leads nowhere, and with one place per address and for handshakes, a client from
    the same address gets in."""
    gw = start_gateway("--handshake-timeout", "1", "--max-handshakes", "1",
                       "--max-per-address", "1")
    target = ("127.0.0.1", gw.port)
    with trio.fail_after(60):
        silent = attacker.Qh3Client(target)
        port = silent.local[1]
        began = trio.current_time()
        silent.hello()
        server_cid = attacker.server_scid(await first_datagram(silent.sock, peek=True))
        assert server_cid, "the gateway's first answer has no connection id"
        lines = await wait_logged(gw, "handshake failed", within=10)
        waited = trio.current_time() - began
        assert lines == [f"handshake failed: 127.0.0.1:{port}: no handshake within 1 s"]
        assert 1.0 <= waited < 6.0, f"dropped {waited:.1f} s after the ClientHello"
        told = await datagrams(silent.sock, quiet=0.5)
        silent.sock.sendto(attacker.short_header_junk(server_cid), target)
        assert await wait_logged(gw, "packet for no connection", within=5) == [
            f"packet for no connection: from 127.0.0.1:{port}"]
        after = await try_connect(gw.port, within=5.0)
        assert after.got_in, f"no place freed by the drop:\n{gw.log()}"
        silent.sock.close()
        # What the gateway sent it, read by its own engine, then its timers run out: it
        # ends by its own idle timeout, not by a CONNECTION_CLOSE from the gateway.
        assert told, "the gateway never answered the ClientHello"
        ended = ended_by(silent, told, target)
        assert ended == "Idle timeout", f"the gateway told the client: {ended}"
    assert gw.stop() == 0


def ended_by(client: attacker.Qh3Client, received: list[bytes], source: tuple[str, int]
             ) -> str | None:
    """Why ``client``'s engine ends once it has read ``received`` (sending nothing) and
    its timers have run out: the reason phrase of its ConnectionTerminated."""
    quic, now = client.quic, trio.current_time()
    for data in received:
        quic.receive_datagram(data, source, now)
    for _ in range(100):
        while (event := quic.next_event()) is not None:
            if isinstance(event, events.ConnectionTerminated):
                return event.reason_phrase
        timer = quic.get_timer()
        if timer is None:
            return None
        now = max(now, timer)
        quic.handle_timer(now)
    return None


# ======================================================================= 3. Version Negotiation
async def test_no_version_negotiation_for_a_small_datagram(start_gateway):
    """Datagrams of an unknown version under 1200 bytes (100, 1199) get no answer and
    one log line; one of 1200 bytes gets one Version Negotiation packet, for its ids,
    offering QUIC v1."""
    gw = start_gateway()
    sock = udp_socket()
    with trio.fail_after(30), sock:
        for size in (100, 1199):
            sock.sendto(attacker.long_header(UNKNOWN_VERSION, os.urandom(8), os.urandom(8),
                                             size), ("127.0.0.1", gw.port))
        dcid, scid = os.urandom(8), os.urandom(8)
        big = attacker.long_header(UNKNOWN_VERSION, dcid, scid, 1200)
        assert len(big) == 1200
        sock.sendto(big, ("127.0.0.1", gw.port))
        await first_datagram(sock, peek=True)
        answers = await datagrams(sock, quiet=1.0)
        vn = (bytes([answers[0][0] | 0x80]) + b"\x00" * 4 + bytes([8]) + scid + bytes([8])
              + dcid + struct.pack("!I", attacker.QUIC_V1)) if answers else b""
        assert answers == [vn], f"answers to 100, 1199 and 1200 bytes: {answers}"
        assert logged(gw, "unknown QUIC version") == [
            f"unknown QUIC version in a small datagram: from 127.0.0.1:{sock.getsockname()[1]}"]
    assert gw.stop() == 0


async def test_version_negotiation_is_rate_limited(start_gateway):
    """500 datagrams of 1200 bytes and an unknown version in a burst: at most 100 Version
    Negotiation packets a second answer them (the budget starts full: 100, plus 100 a
    second while the burst is read); the gateway counts the rest, and logs them once."""
    gw = start_gateway("--summary-interval", "1")
    sock = udp_socket()
    sent = 500
    with trio.fail_after(30), sock:
        burst = [attacker.long_header(UNKNOWN_VERSION, os.urandom(8), os.urandom(8), 1200)
                 for _ in range(sent)]
        began = trio.current_time()
        for data in burst:
            sock.sendto(data, ("127.0.0.1", gw.port))
        await first_datagram(sock, peek=True)
        answers, last = 0, began
        while True:
            with trio.move_on_after(1.0):
                await trio.lowlevel.wait_readable(sock)
                while True:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        break
                    assert data[1:5] == b"\x00" * 4, data
                    answers, last = answers + 1, trio.current_time()
                continue
            break
        allowed = 100 + int(100 * (last - began)) + 1
        assert 100 <= answers <= allowed, (
            f"{answers} Version Negotiation packets for {sent} datagrams in "
            f"{last - began:.2f} s (allowed: {allowed})")
        assert allowed < sent, f"too slow a run to tell ({last - began:.1f} s)"
        over = 0
        with trio.fail_after(10):
            while over + answers < sent:
                await trio.sleep(0.2)
                over = summed(gw)[0]["Version Negotiation over its rate"]
        assert over + answers == sent
        assert logged(gw, "Version Negotiation over its rate") == [
            f"Version Negotiation over its rate: to 127.0.0.1:{sock.getsockname()[1]}"]
    assert gw.stop() == 0


# ============================================================================ 4. SMB first
def not_negotiate() -> dict[str, bytes]:
    """First messages the gateway must not dial the backend for."""
    smb1 = b"\xffSMB" + bytes(96)
    session_setup = bytearray(attacker.smb2_negotiate())
    session_setup[4 + 12:4 + 14] = (1).to_bytes(2, "little")  # Command: SESSION_SETUP
    return {"http": b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n",
            "smb1": b"\x00" + len(smb1).to_bytes(3, "big") + smb1,
            "smb2 session setup": bytes(session_setup)}


async def test_the_backend_is_dialled_only_for_an_smb2_negotiate(start_gateway):
    """Clients whose stream opens with HTTP, SMB1 or an SMB2 request other than
    NEGOTIATE are closed with the reason, logged (one line, all counted), and the
    backend (a listener of the test's own) sees no connection; then a client with a
    real SMB2 NEGOTIATE makes one, which carries those very bytes."""
    backend = Backend()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            backend_port = await nursery.start(backend.run)
            gw = start_gateway("--summary-interval", "1", backend_port=backend_port)
            ports = []
            for what, first in not_negotiate().items():
                client = AioquicClient("127.0.0.1", gw.port)
                await nursery.start(client.run)
                await client.handshake(5)
                ports.append(client.sock.getsockname()[1])
                await client.open_stream().send_all(first)
                with trio.move_on_after(5):
                    await client.terminated.wait()
                assert client.close_reason == (
                    f"connection closed (error 0x0): gateway: {NOT_NEGOTIATE}"), (
                    f"{what}: {client.close_reason}; the backend got {backend.received}")
            await trio.sleep(0.5)
            assert backend.accepted == 0, f"the backend was dialled: {backend.received}"
            assert logged(gw, "refused: no SMB2 NEGOTIATE") == [
                f"refused: no SMB2 NEGOTIATE: 127.0.0.1:{ports[0]}: {NOT_NEGOTIATE}"]
            with trio.fail_after(10):
                while summed(gw)[0]["refused: no SMB2 NEGOTIATE"] < 3:  # noqa: ASYNC110
                    await trio.sleep(0.2)
            assert summed(gw)[0]["refused: no SMB2 NEGOTIATE"] == 3

            client = AioquicClient("127.0.0.1", gw.port)
            await nursery.start(client.run)
            await client.handshake(5)
            negotiate = attacker.smb2_negotiate()
            await client.open_stream().send_all(negotiate)
            with trio.fail_after(10):
                while not backend.received or len(backend.received[0]) < len(negotiate):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert backend.accepted == 1 and bytes(backend.received[0]) == negotiate
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert gw.stop() == 0


# ===================================================================== 5. the splice's timeouts
async def through_gateway(nursery: trio.Nursery, cert, backend: Backend, **limits: float
                          ) -> tuple[Gateway, AioquicClient, int]:
    """A gateway in this process in front of ``backend``, an aioquic client connected
    to it, and that client's port."""
    gateway = Gateway(listen=("127.0.0.1", 0),
                      backend=("127.0.0.1", await nursery.start(backend.run)),
                      cert=str(cert.cert), key=str(cert.key), limits=Limits(**limits))
    await nursery.start(gateway.serve)
    client = await connected(nursery, gateway)
    return gateway, client, client.sock.getsockname()[1]


async def all_gone(gateway: Gateway, within: float = 5.0) -> None:
    """The gateway holds no connection any more."""
    with trio.fail_after(within):
        while gateway.server.connections:  # type: ignore[union-attr]  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_first_message_timeout(cert, monkeypatch, caplog):
    """FIRST_MESSAGE_TIMEOUT (10 s, here 1 s): a client whose stream stops in the middle
    of its NEGOTIATE is closed once it is up, with the reason, and logged; the backend
    is never dialled. (A stream that carries no byte is no stream to the gateway: that
    case is Limits.stream_timeout's, test_gateway_limits.py.)"""
    monkeypatch.setattr(quicfs.gateway, "FIRST_MESSAGE_TIMEOUT", 1.0)
    caplog.set_level("INFO", logger="quicfs.gateway")
    backend = Backend()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            gateway, client, port = await through_gateway(nursery, cert, backend)
            negotiate = attacker.smb2_negotiate()
            began = trio.current_time()
            await client.open_stream().send_all(negotiate[:len(negotiate) // 2])
            with trio.move_on_after(5):
                await client.terminated.wait()
            waited = trio.current_time() - began
            reason = "no SMB2 NEGOTIATE within 1 s"
            assert client.close_reason == f"connection closed (error 0x0): gateway: {reason}"
            assert 1.0 <= waited < 5.0, waited
            await all_gone(gateway)
            assert backend.accepted == 0
            assert gateway.stats.connections == 0
            assert gateway.refusals.total["refused: no SMB2 NEGOTIATE"] == 1
            nursery.cancel_scope.cancel()
    assert [r.getMessage() for r in caplog.records if "NEGOTIATE" in r.getMessage()] == [
        f"refused: no SMB2 NEGOTIATE: 127.0.0.1:{port}: {reason}"]


async def test_backend_answer_timeout(cert, monkeypatch, caplog):
    """BACKEND_ANSWER_TIMEOUT (10 s, here 1 s): a backend that takes the NEGOTIATE and
    never answers. Once it is up, the gateway ends the splice: the backend connection is
    closed, the client's stream ends with nothing on it, the connection's log line says
    why, and once the client has had its linger (here 1 s) the connection is closed."""
    monkeypatch.setattr(quicfs.gateway, "BACKEND_ANSWER_TIMEOUT", 1.0)
    caplog.set_level("INFO", logger="quicfs.gateway")
    backend = Backend()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            gateway, client, port = await through_gateway(nursery, cert, backend, linger=1.0)
            stream = client.open_stream()
            negotiate = attacker.smb2_negotiate()
            began = trio.current_time()
            await stream.send_all(negotiate)
            with trio.move_on_after(5):
                assert await stream.receive_some() == b""
            waited = trio.current_time() - began
            assert 1.0 <= waited < 5.0, waited
            assert backend.accepted == 1 and bytes(backend.received[0]) == negotiate
            with trio.fail_after(2):
                while not backend.ended:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            with trio.fail_after(5):
                await client.terminated.wait()
            assert client.close_reason == "connection closed (error 0x0): stream done"
            await all_gone(gateway)
            nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("connection from")]
    assert len(lines) == 1, lines
    line = lines[0]
    found = re.fullmatch(rf"connection from 127\.0\.0\.1:{port}: {len(negotiate)} bytes up, "
                         r"0 bytes down, (\d+\.\d) s, backend did not answer NEGOTIATE "
                         r"within 1 s", line)
    assert found and 1.0 <= float(found[1]) < 5.0, line


# ============================================================================ 6. failed handshakes
async def test_a_failed_handshake_is_logged_once_with_its_reason(start_gateway):
    """A client that offers ALPN h3, not smb: the gateway refuses it with a TLS alert
    and logs one line for it, with the reason. An Initial that decrypts but carries no
    ClientHello (a PING), sent twice: no answer, one line."""
    gw = start_gateway()
    target = ("127.0.0.1", gw.port)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            client = AioquicClient(*target, alpn="h3")
            client.sock.bind(("127.0.0.1", 0))
            port = client.sock.getsockname()[1]
            await nursery.start(client.run)
            with trio.fail_after(5):
                await client.terminated.wait()
            assert client.close_reason == ("connection closed (error 0x128): No common ALPN "
                                           "protocols")
            await wait_logged(gw, "handshake failed")
            await trio.sleep(1.0)  # anything else the gateway would say of it
            peer = f"127.0.0.1:{port}"
            assert [ln for ln in logged(gw, "") if peer in ln and "Retry" not in ln] == [
                f"handshake failed: {peer}: No common ALPN protocols"]
            nursery.cancel_scope.cancel()

        dcid, flight = attacker.client_initial(target)
        ping = attacker.InitialForge(flight[0], dcid)
        ping.payload = b"\x01" + bytes(len(ping.payload) - 1)  # PING, then PADDING
        sock = udp_socket()
        with sock:
            for _ in range(2):
                sock.sendto(ping.forge(os.urandom(8)), target)
            lines = await wait_logged(gw, "first Initial refused")
            assert await datagrams(sock, quiet=0.5) == []
            assert lines == [f"first Initial refused, not answered: from "
                             f"127.0.0.1:{sock.getsockname()[1]}: error 0xa"]
    assert gw.stop() == 0


# ============================================================================ 7. the summary
SUMMARY = re.compile(r"summary of the last 1 s: (\d+) connections served, (\d+) active, "
                     r"(\d+) handshakes in progress; refused or dropped: (.+)")


def summed(gw: GatewayProcess) -> tuple[Counter[str], list[tuple[int, int, int]]]:
    """The refusals of all the summary lines so far, added up by kind; each line's
    connections served, active and handshakes in progress."""
    refused: Counter[str] = Counter()
    figures = []
    for line in logged(gw, "summary"):
        found = SUMMARY.fullmatch(line)
        assert found, f"a summary line out of shape: {line}"
        figures.append((int(found[1]), int(found[2]), int(found[3])))
        if found[4] != "none":
            for part in found[4].split(", "):
                n, kind = part.split(" ", 1)
                refused[kind] += int(n)
    return refused, figures


async def test_the_summary_counts_what_was_refused(start_gateway, samba, small):
    """--summary-interval 1: 3 packets for no connection, 2 small datagrams of an unknown
    version and an unreadable one appear in the summary, counted exactly and most first;
    an interval in which nothing happened writes no line; a served connection is
    counted."""
    gw = start_gateway("--summary-interval", "1")
    target = ("127.0.0.1", gw.port)
    sent = {"packet for no connection": 3, "unknown QUIC version in a small datagram": 2,
            "unreadable datagram": 1}
    with trio.fail_after(60):
        sock = udp_socket()
        with sock:
            for _ in range(3):
                sock.sendto(attacker.short_header_junk(os.urandom(8)), target)
            for _ in range(2):
                sock.sendto(attacker.long_header(UNKNOWN_VERSION, os.urandom(8),
                                                 os.urandom(8), 100), target)
            sock.sendto(b"\x80", target)
        deadline = trio.current_time() + 10
        while summed(gw)[0] != sent:
            assert trio.current_time() < deadline, (
                f"summaries: {logged(gw, 'summary')}; sent: {sent}")
            await trio.sleep(0.1)
        lines = logged(gw, "summary")
        assert set(summed(gw)[1]) == {(0, 0, 0)}
        if len(lines) == 1:  # the burst fell in one interval, as it almost always does
            assert lines[0].endswith("refused or dropped: 3 packet for no connection, 2 "
                                     "unknown QUIC version in a small datagram, 1 "
                                     "unreadable datagram"), lines
        await trio.sleep(2.5)
        assert logged(gw, "summary") == lines, "a summary of an interval with nothing in it"

        async with quicfs.connect(gw.url("plain"), gw.options(samba)) as share:
            await read_through(share, small)
        deadline = trio.current_time() + 10
        while sum(served for served, _, _ in summed(gw)[1]) < 1:
            assert trio.current_time() < deadline, logged(gw, "summary")
            await trio.sleep(0.1)
        assert sum(served for served, _, _ in summed(gw)[1]) == 1
    assert gw.stop() == 0
