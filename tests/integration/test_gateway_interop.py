"""An independent QUIC client (aioquic) against the real `quicfs gateway` (issue 19, item
8): our SMB client runs over aioquic's stream, through the gateway to Samba.

aioquic 1.7 pads its first datagram to 1200 bytes with bytes *after* its Initial packet
(RFC 9000 14.1 allows it), not with PADDING frames inside it; the gateway must answer
such a client all the same, on a fresh handshake and on a resumed one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from quicfs.cert import write_self_signed
from quicfs.client.connection import open_connection
from quicfs.client.session import Session
from quicfs.client.share import Share
from quicfs.client.tree import Tree
from quicfs.options import Options
from quicfs.transport.framing import FramedStream
from quicfs.transport.quic.admission import Limits
from quicfs.transport.quic.server import QuicServer, serve_quic
from quicfs.transport.quic.stream import QuicStream
from quicfs.url import parse_url
from tests.support.aioquic_client import AioquicClient, AioquicStream, HandshakeFailed

SIZE = 16 * 1024 * 1024
HANDSHAKE_WITHIN = 5.0


@pytest.fixture
def big_file(samba):
    """16 MiB written straight into the share's directory, and its SHA-256."""
    data = os.urandom(SIZE)
    name = f"aioquic-{os.getpid()}-{os.urandom(4).hex()}.bin"
    path = samba.share_path("plain") / name
    path.write_bytes(data)
    path.chmod(0o644)
    yield name, hashlib.sha256(data).hexdigest()
    path.unlink(missing_ok=True)


async def _handshake(client: AioquicClient) -> None:
    await client.handshake(HANDSHAKE_WITHIN)
    assert client.alpn == "smb"


async def _run(case: Callable[[trio.Nursery], Awaitable[tuple[str, int]]],
               gateway) -> tuple[str, int]:
    """Run ``case(nursery)``; a handshake that fails fails the test with the gateway's
    account of it (trio wraps errors from a nursery in a group)."""
    failure = None
    try:
        async with trio.open_nursery() as nursery:
            return await case(nursery)
    except* HandshakeFailed as group:
        failure = str(group.exceptions[0])
    tail = "\n".join(gateway.log().splitlines()[-20:])
    pytest.fail(f"{failure}\n--- gateway log (tail) ---\n{tail}", pytrace=False)


async def _smb_read(client: AioquicClient, gateway, samba, name: str) -> tuple[str, int]:
    """NEGOTIATE, SESSION_SETUP, TREE_CONNECT and a read of ``name`` on the ``plain``
    share with our SMB client over ``client``'s stream: (SHA-256, dialect)."""
    peer = f"{gateway.host}:{gateway.port}"
    transport = FramedStream(client.open_stream(), kind="quic", peer=peer)
    async with open_connection(transport, server_name=gateway.host,
                               negotiate_within=10) as conn:
        assert conn.params is not None
        session = Session(conn)
        await session.setup(username=samba.username, password=samba.password, domain=None)
        assert session.session_id and not session.is_guest
        tree = Tree(session, gateway.host, "plain")
        await tree.connect()
        share = Share(parse_url(gateway.url("plain")), tree, Options())
        data = await share.read_file(name)
        await tree.disconnect()
        await session.logoff()
        return hashlib.sha256(data).hexdigest(), int(conn.params.dialect)


async def test_fresh_handshake_reads_16mib(gateway, samba, big_file):
    name, digest = big_file

    async def case(nursery: trio.Nursery) -> tuple[str, int]:
        client = AioquicClient(gateway.host, gateway.port)
        await nursery.start(client.run)
        try:
            with trio.fail_after(20):
                await _handshake(client)
                assert not client.session_resumed
                return await _smb_read(client, gateway, samba, name)
        finally:
            await client.aclose()

    got, dialect = await _run(case, gateway)
    assert got == digest
    assert dialect == 0x0311


@pytest.mark.parametrize("early", [False, True], ids=["1rtt", "0rtt"])
async def test_resumed_handshake_reads_16mib(gateway, samba, big_file, early):
    """A second connection with the session ticket the first one got: resumed (and,
    with ``early``, its NEGOTIATE sent as 0-RTT data), then the same 16 MiB read.

    The NEGOTIATE leaves whenever our SMB client has it ready, before or after the
    gateway's first answer. Before the fix, aioquic's resumed ClientHello got a Retry,
    and a NEGOTIATE sent before it was back was never sent again (an aioquic 1.7.2
    defect: test_a_resumed_aioquic_client_is_answered_without_a_retry), or, sent as
    the Retry came back, opened a stream that nothing took
    (test_0rtt_data_in_the_first_datagram_reaches_the_handler): "did not answer
    NEGOTIATE within 10 s", about 1 run in 4 under load."""
    name, digest = big_file

    async def case(nursery: trio.Nursery) -> tuple[str, int]:
        first = AioquicClient(gateway.host, gateway.port)
        await nursery.start(first.run)
        try:
            with trio.fail_after(10):
                await _handshake(first)
                assert not first.session_resumed
                await first.ticket_received.wait()
        finally:
            await first.aclose()

        second = AioquicClient(gateway.host, gateway.port, ticket=first.tickets[-1])
        await nursery.start(second.run)
        try:
            with trio.fail_after(20):
                if early:
                    # NEGOTIATE leaves before the handshake is done: as 0-RTT data.
                    result: list[tuple[str, int]] = []
                    async with trio.open_nursery() as inner:

                        async def read() -> None:
                            result.append(await _smb_read(second, gateway, samba, name))

                        inner.start_soon(read)
                        await _handshake(second)
                    got = result[0]
                else:
                    await _handshake(second)
                    got = await _smb_read(second, gateway, samba, name)
            assert second.session_resumed, "the gateway did not resume the session"
            if early:
                assert second.early_data_accepted, "the gateway refused the 0-RTT data"
            return got
        finally:
            await second.aclose()

    got, dialect = await _run(case, gateway)
    assert got == digest
    assert dialect == 0x0311


class _EarlyAfterRetry(AioquicClient):
    """Queues its first bytes on its stream as it acts on the server's Retry: they leave
    as 0-RTT data in the datagram of the Initial sent again."""

    def _receive(self, now: float) -> None:
        retried = self.quic._retry_count
        super()._receive(now)
        if not retried and self.quic._retry_count:
            self.quic.send_stream_data(0, b"early " * 50)


class _EarlyAfterHello(AioquicClient):
    """Sends its first bytes as 0-RTT data in a datagram of their own just after its
    ClientHello, before any answer can come."""

    def _transmit(self) -> None:
        first = not self.datagrams_sent
        super()._transmit()
        if first:
            self.quic.send_stream_data(0, b"early " * 50)
            super()._transmit()


async def _echo(stream: QuicStream, peer: str) -> None:
    while data := await stream.receive_some(65536):
        await stream.send_all(data)


async def _echoed(stream: AioquicStream, want: bytes) -> bytes:
    """What ``stream`` got back within 5 s, up to ``want``'s length."""
    got = b""
    with trio.move_on_after(5):
        while len(got) < len(want):
            got += await stream.receive_some(65536)
    return got


async def _echo_server(nursery: trio.Nursery, tmp_path, limits: Limits) -> QuicServer:
    """Our QUIC server (transport/quic/server.py) on a free port, echoing each stream."""
    files = write_self_signed("localhost", tmp_path)
    server: QuicServer = await nursery.start(
        lambda task_status: serve_quic("127.0.0.1", 0, cert=str(files.cert),
                                       key=str(files.key), handler=_echo, limits=limits,
                                       task_status=task_status))
    return server


async def _ticket(nursery: trio.Nursery, port: int) -> tuple[object, int]:
    """A session ticket from a full handshake of aioquic's, and the Retries it took."""
    first = AioquicClient("127.0.0.1", port)
    await nursery.start(first.run)
    await first.handshake(HANDSHAKE_WITHIN)
    await first.ticket_received.wait()
    await first.aclose()
    return first.tickets[-1], first.quic._retry_count


async def test_0rtt_data_in_the_first_datagram_reaches_the_handler(tmp_path):
    """aioquic resumes and sends its first bytes as 0-RTT data once it has acted on the
    server's Retry (--retry always), in the datagram of its Initial sent again: the
    first the server reads of the connection opens the stream too. That stream
    reaches the handler (an echo), and every connection id the server gave the client
    routes to the connection. Before: the stream was opened while the new connection
    had no handler yet, and nothing took it: test_resumed_handshake_reads_16mib[0rtt]
    saw its NEGOTIATE unanswered when it was queued as the Retry came back (here every
    time), and 7 of the 8 ids went unrouted."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await _echo_server(nursery, tmp_path, Limits(retry="always"))
            port = server.sock.getsockname()[1]
            ticket, _ = await _ticket(nursery, port)
            second = _EarlyAfterRetry("127.0.0.1", port, ticket=ticket)  # type: ignore[arg-type]
            stream = second.open_stream()
            await nursery.start(second.run)
            await second.handshake(HANDSHAKE_WITHIN)
            assert second.quic._retry_count == 1
            assert second.session_resumed and second.early_data_accepted
            assert await _echoed(stream, b"early " * 50) == b"early " * 50
            ids = [second.quic._peer_cid.cid,
                   *(c.cid for c in second.quic._peer_cid_available)]
            assert len(ids) == 8
            driver = server.routes[ids[0]]
            assert [server.routes.get(cid) is driver for cid in ids] == [True] * 8
            await second.aclose()
            nursery.cancel_scope.cancel()


async def test_a_resumed_aioquic_client_is_answered_without_a_retry(tmp_path):
    """aioquic's first datagram is padded after its Initial, so its packets allow the
    server three times what they hold (RFC 9000 8.1): not a full handshake's flight
    (with the certificate), which gets a Retry, but a resumed one's, which is answered
    at once. Its 0-RTT data, sent just after its ClientHello, reaches the handler.
    Before: a Retry for both, and aioquic 1.7.2 never sends again 0-RTT data it sent
    before a Retry: the data never came (test_resumed_handshake_reads_16mib[0rtt]: 'did
    not answer NEGOTIATE within 10 s' about 1 run in 4 under load)."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await _echo_server(nursery, tmp_path, Limits())
            port = server.sock.getsockname()[1]
            ticket, retries = await _ticket(nursery, port)
            assert retries == 1
            second = _EarlyAfterHello("127.0.0.1", port, ticket=ticket)  # type: ignore[arg-type]
            stream = second.open_stream()
            await nursery.start(second.run)
            await second.handshake(HANDSHAKE_WITHIN)
            assert await _echoed(stream, b"early " * 50) == b"early " * 50
            assert second.session_resumed and second.early_data_accepted
            assert second.quic._retry_count == 0
            await second.aclose()
            nursery.cancel_scope.cancel()
