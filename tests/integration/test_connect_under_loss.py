"""Connecting over QUIC through a lossy path never fails (issue 21 item 5).

The cause found: when qh3 2.1's client has 0-RTT data in flight and its loss timer fires
before the 1-RTT keys exist (the ClientHello, the ServerHello or the server's Handshake
flight lost), it builds its next application packet at the 1-RTT level and fails with
"packet protection failed: missing OneRtt packet key"; the connection is dead. The
server is left with a half-open connection that had already taken the 0-RTT NEGOTIATE
and opened its backend; enough of them and the gateway asks every client for a Retry.
Our client now resumes without 0-RTT (engine.py), and a resumed handshake that fails
once the server has answered falls back to a full one (quic/client.py), as does a full one
that a transport error ended."""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import ssl
from dataclasses import dataclass, field

import pytest
import trio
from qh3._hazmat import pull_quic_header
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration

import quicfs
from quicfs.cert import write_self_signed
from quicfs.transport.quic import QuicTLSOptions, TicketStore, open_quic
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.tickets import ServerTickets
from tests.conftest import running_gateway
from tests.support.impair import UdpImpairProxy

#: Connections in all, and how many run at once (each lane through a proxy of its own,
#: so each has a ticket of its own: the store keys tickets by host and port).
CONNECTS = 200
LANES = 10
LOSS = 0.02
DELAY = 0.010


@pytest.mark.serial  # 200 connects, each within its timeouts
async def test_connect_200_times_through_loss(samba, gateway, caplog):
    """Each connect is a whole one as the library makes it (QUIC handshake, NEGOTIATE,
    SESSION_SETUP, TREE_CONNECT) and a small read, through 2 % loss each way and 10 ms
    each way, to the real gateway in front of the real smbd; every other one offers
    the ticket its lane's previous connection got. None fails, and each takes exactly
    one QUIC handshake: no handshake failed and was made again behind the caller's back
    (before the fix: 48 of the 100 ticketed ones in one run, and a connect failed in
    one run of two)."""
    payload = os.urandom(3000)
    (samba.share_path("plain") / "under-loss.bin").write_bytes(payload)
    want = hashlib.sha256(payload).hexdigest()
    policy = QuicTLSOptions(fingerprint=gateway.fingerprint).policy_id()
    store = TicketStore()  # the per-run cache (conftest.py)
    failures: list[str] = []
    kinds: collections.Counter[str] = collections.Counter()
    proxies = [UdpImpairProxy(("127.0.0.1", gateway.port), loss=LOSS, delay=DELAY,
                              seed=lane) for lane in range(LANES)]

    async def lane(proxy: UdpImpairProxy, count: int) -> None:
        url = f"//127.0.0.1:{proxy.port}/plain"
        for i in range(count):
            ticketed = i % 2 == 1
            if not ticketed:
                store.forget("127.0.0.1", proxy.port, policy)
            try:
                with trio.fail_after(30):
                    async with quicfs.connect(url, gateway.options(samba)) as s:
                        got = hashlib.sha256(await s.read_file("under-loss.bin")).hexdigest()
                        driver = s.conn.transport.driver  # type: ignore[attr-defined]
                        kinds["resumed" if driver.session_resumed else "full"] += 1
                assert got == want
            except Exception as exc:
                failures.append(f"{'ticket' if ticketed else 'no ticket'}: "
                                f"{type(exc).__name__}: {exc}")

    caplog.set_level(logging.INFO, logger="quicfs.quic")
    with trio.fail_after(120):
        async with trio.open_nursery() as n:
            for proxy in proxies:
                await n.start(proxy.run)
            async with trio.open_nursery() as lanes:
                for proxy in proxies:
                    lanes.start_soon(lane, proxy, CONNECTS // LANES)
            n.cancel_scope.cancel()
    assert not failures, f"{len(failures)} of {CONNECTS} failed:\n" + "\n".join(failures)
    # Counted from the client's own word: a proxy's count of client addresses is not
    # one, since the kernel may give a new socket the port a finished one had.
    redone = [r.getMessage() for r in caplog.records if "a full handshake instead" in
              r.getMessage() or "session ticket unusable" in r.getMessage()]
    assert not redone, f"{len(redone)} handshakes failed and were redone:\n" + \
        "\n".join(redone)
    # The loss was there: near 2 % of what crossed (aioquic sends fewer datagrams a
    # connect than qh3, so a count of drops would depend on the engine).
    dropped = sum(p.up.dropped + p.down.dropped for p in proxies)
    crossed = sum(p.up.seen + p.down.seen for p in proxies)
    assert dropped >= LOSS / 2 * crossed, (dropped, crossed)
    # The ticketed half mostly resumed: resumption is covered, not only full handshakes.
    assert kinds["resumed"] >= CONNECTS // 4, kinds


async def test_a_resumed_handshake_that_fails_falls_back_to_a_full_one(samba, gateway,
                                                                        caplog):
    """The path fails just after the server's first answer to a resumed handshake; the
    client forgets the ticket and makes a full handshake, which connects."""
    proxy = UdpImpairProxy(("127.0.0.1", gateway.port))
    (samba.share_path("plain") / "fallback.txt").write_bytes(b"full handshake\n")
    policy = QuicTLSOptions(fingerprint=gateway.fingerprint).policy_id()
    store = TicketStore()
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            port = await n.start(proxy.run)
            url = f"//127.0.0.1:{port}/plain"
            opts = gateway.options(samba, connect_timeout="2")
            async with quicfs.connect(url, opts):
                pass
            first = store.load("127.0.0.1", port, policy)
            assert first is not None
            # The server's first datagram gets through, then nothing.
            proxy.blackout_after_down = proxy.down.forwarded + 1

            async def lift() -> None:
                # The full handshake begins from a socket of its own: a new client.
                while proxy.clients < 3:  # noqa: ASYNC110 (a counter, no event)
                    await trio.sleep(0.005)
                proxy.set_blackout(False)

            n.start_soon(lift)
            caplog.set_level(logging.INFO, logger="quicfs.quic")
            async with quicfs.connect(url, opts) as s:
                assert not s.conn.transport.driver.session_resumed  # type: ignore[attr-defined]
                assert await s.read_file("fallback.txt") == b"full handshake\n"
            n.cancel_scope.cancel()
    assert proxy.clients == 3
    # The server answered, so the message says the handshake ran out of time, not that
    # nothing answered (before: "no QUIC answer from ... — is UDP blocked?").
    assert (f"127.0.0.1:{port}: resumed handshake failed (QUIC handshake with "
            f"127.0.0.1:{port} did not complete within 2 s): a full handshake "
            "instead") in caplog.messages
    second = store.load("127.0.0.1", port, policy)
    assert second is not None and second.ticket != first.ticket  # type: ignore[attr-defined]


async def test_a_first_initial_without_its_clienthello_is_not_answered(samba, gateway,
                                                                         caplog):
    """Both datagrams of the ClientHello lost, and the first of their copies: the
    gateway's first datagram of this client is an Initial with no CRYPTO frame, which
    qh3 refuses (PROTOCOL_VIOLATION). The gateway drops it unanswered, keeping no state,
    and the ClientHello sent again opens the connection: one handshake (before: the
    refusal ended it and the client had to make a second)."""
    proxy = UdpImpairProxy(("127.0.0.1", gateway.port))
    proxy.drop_up = {1, 2, 3}
    (samba.share_path("plain") / "again.txt").write_bytes(b"one handshake\n")
    caplog.set_level(logging.INFO, logger="quicfs.quic")
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            port = await n.start(proxy.run)
            async with quicfs.connect(f"//127.0.0.1:{port}/plain",
                                      gateway.options(samba)) as s:
                assert await s.read_file("again.txt") == b"one handshake\n"
            n.cancel_scope.cancel()
    assert proxy.clients == 1
    assert not [m for m in caplog.messages if "instead" in m], caplog.messages


async def _bare_qh3_server(sock: trio.socket.SocketType, config: QuicConfiguration) -> None:
    """A QUIC server that is qh3 and nothing else: one connection per client address,
    made from whatever datagram comes first, as a server without our gateway's first-
    datagram rule would (engine.py's Engine is qh3's QuicConnection)."""
    conns: dict[object, Engine] = {}
    while True:
        data, addr = await sock.recvfrom(65536)
        now = trio.current_time()
        quic = conns.get(addr)
        if quic is None:
            quic = conns[addr] = Engine(configuration=config,
                                        original_destination_connection_id=pull_quic_header(
                                            data, 0, 8)[3])
        quic.receive([data], addr, now)
        while quic.next_event() is not None:
            pass
        for out, to in quic.datagrams_to_send(now):
            await sock.sendto(out, to)


async def test_a_full_handshake_refused_for_what_loss_did_is_made_again(certificate,
                                                                        caplog):
    """The same loss in front of a server that answers the stray Initial with
    PROTOCOL_VIOLATION (bare qh3): the client makes one more handshake, which
    connects."""
    caplog.set_level(logging.INFO, logger="quicfs.quic")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    proxy = UdpImpairProxy(sock.getsockname())
    proxy.drop_up = {1, 2, 3}
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(_bare_qh3_server, sock, _server_config(certificate))
            port = await n.start(proxy.run)
            transport = await open_quic("127.0.0.1", port, nursery=n,
                                        tls=QuicTLSOptions(insecure=True))
            await transport.aclose()
            n.cancel_scope.cancel()
    assert proxy.clients == 2
    assert (f"127.0.0.1:{port}: handshake failed (QUIC handshake with 127.0.0.1:{port} "
            "failed: packet contains no CRYPTO frame): a full handshake instead"
            ) in caplog.messages


# ------------------------------------------------------------------ in memory, exactly
A, B = ("127.0.0.1", 4433), ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    files = write_self_signed("localhost", tmp_path_factory.mktemp("cert"))
    return str(files.cert), str(files.key)


def _server_config(certificate: tuple[str, str]) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=["smb"])
    config.load_cert_chain(*certificate)
    return config


@dataclass
class Exchanged:
    confirmed: bool
    #: What the server got on the stream.
    received: bytes
    #: The session tickets the client got.
    tickets: list[object]
    #: When the client's handshake completed, and when it was confirmed (None: it was
    #: not), in the exchange's time.
    completed: float | None = None
    confirmed_at: float | None = None
    #: Datagrams each way.
    counts: dict[str, int] = field(default_factory=dict)


def _exchange(certificate: tuple[str, str], tickets: ServerTickets, ticket: object | None,
              drop: set[tuple[str, int]], late: set[tuple[str, int]] = frozenset()
              ) -> Exchanged:
    """A client (our Engine) and a qh3 server in memory, 10 ms a step; the client writes
    NEGOTIATE-sized data at once (as the Connection does). ``drop``: the datagrams lost,
    as ("up" | "down", n), counted from 1; ``late``: those that arrive after the others
    sent in the same step (reordered)."""
    got: list[object] = []
    config = QuicConfiguration(is_client=True, alpn_protocols=["smb"],
                               verify_mode=ssl.CERT_NONE, server_name="localhost")
    config.session_ticket = ticket  # type: ignore[assignment]
    client = Engine(configuration=config, session_ticket_handler=got.append)
    client.connect(A, now=0.0)
    client.send_stream_data(0, b"N" * 300)
    server: Engine | None = None
    counts = {"up": 0, "down": 0}
    received = bytearray()
    completed = confirmed_at = None
    now = 0.0

    def crossing(engine: Engine, way: str) -> list[bytes]:
        """What ``engine`` sends now that arrives, in the order it arrives."""
        sent = []
        for data, _ in engine.datagrams_to_send(now):
            counts[way] += 1
            sent.append(((way, counts[way]) in late, counts[way], data))
        return [data for _, n, data in sorted(sent) if (way, n) not in drop]

    for _ in range(500):
        for data in crossing(client, "up"):
            if server is None:
                server = Engine(configuration=_server_config(certificate),
                                original_destination_connection_id=pull_quic_header(
                                    data, 0, 8)[3],
                                session_ticket_fetcher=tickets.take,
                                session_ticket_handler=tickets.add)
            server.receive([data], B, now)
        if server is not None:
            while (event := server.next_event()) is not None:
                if isinstance(event, events.StreamDataReceived):
                    received += event.data
            for data in crossing(server, "down"):
                client.receive([data], A, now)
        if completed is None and client._handshake_complete:
            completed = now
        if confirmed_at is None and client.confirmed:
            confirmed_at = now
        if client.confirmed and len(received) >= 300:
            break
        now += 0.01
        for engine in (client, server):
            timer = engine.get_timer() if engine is not None else None
            if timer is not None and now >= timer:
                engine.handle_timer(now)  # type: ignore[union-attr]
    return Exchanged(client.confirmed, bytes(received), got, completed, confirmed_at, counts)


@pytest.mark.parametrize("lost", [("up", 1), ("down", 1), ("down", 2)],
                         ids=["client-hello", "server-hello", "server-handshake"])
def test_a_ticket_that_allows_0rtt_survives_a_lost_first_flight(certificate, lost):
    """The three losses that killed qh3's client when NEGOTIATE went in 0-RTT ('packet
    protection failed: missing OneRtt packet key' out of datagrams_to_send)."""
    tickets = ServerTickets()
    first = _exchange(certificate, tickets, None, set())
    assert first.confirmed and first.tickets
    ticket = first.tickets[-1]
    assert ticket.max_early_data_size == 0xFFFFFFFF  # type: ignore[attr-defined]
    resumed = _exchange(certificate, tickets, ticket, {lost})
    assert resumed.confirmed and resumed.received == b"N" * 300


@pytest.mark.parametrize("resumed", [False, True], ids=["full", "resumed"])
def test_a_server_flight_reordered_is_read_without_waiting(certificate, resumed):
    """The server's first datagram (its Initial, the ServerHello) arrives after the
    Handshake and 1-RTT datagrams sent with it. The client keeps what it could not
    read yet and reads it once the ServerHello gives the keys: its handshake completes
    as soon as in order, and the server sends nothing again. Before: the client
    dropped them and waited for the server's loss timer (here 60 ms, the server's RTT
    being known; the gateway under load, with an inflated RTT, took 1.4 s, and a loss
    on top of it cost a resumed connect its 5 s)."""
    tickets = ServerTickets()
    first = _exchange(certificate, tickets, None, set())
    ticket = first.tickets[-1] if resumed else None
    in_order = _exchange(certificate, tickets, ticket, set())
    if resumed:
        ticket = in_order.tickets[-1]
    reordered = _exchange(certificate, tickets, ticket, set(), late={("down", 1)})
    assert in_order.confirmed and reordered.confirmed
    assert reordered.received == b"N" * 300
    assert reordered.completed is not None
    assert reordered.completed == in_order.completed
    assert reordered.counts["down"] == in_order.counts["down"]


@pytest.fixture(scope="module")
def retry_gateway(samba, tmp_path_factory):
    yield from running_gateway(tmp_path_factory.mktemp("gateway-retry"), samba.port,
                               ["--retry", "always"])


@pytest.mark.quiet  # bounds the connect: < 2 s
async def test_a_lost_retry_is_sent_again(samba, retry_gateway):
    """The gateway's Retry (its first datagram to this client) is lost: the client sends
    its Initial again after its PTO, and the gateway answers it with a Retry again, so
    the connect takes about one PTO more (before: the same Initial went unanswered for
    2 s, and a resumed connect, which waits 5 s, failed through 2 % loss in CI)."""
    gw = retry_gateway
    proxy = UdpImpairProxy(("127.0.0.1", gw.port))
    proxy.drop_down = {1}
    (samba.share_path("plain") / "retry.txt").write_bytes(b"after a lost Retry\n")
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            port = await n.start(proxy.run)
            began = trio.current_time()
            async with quicfs.connect(f"//127.0.0.1:{port}/plain",
                                      gw.options(samba, connect_timeout="2")) as s:
                took = trio.current_time() - began
                assert await s.read_file("retry.txt") == b"after a lost Retry\n"
            n.cancel_scope.cancel()
    assert proxy.down.dropped == 1
    assert proxy.clients == 1  # one handshake, not a second one after a timeout
    assert took < 2, took


def test_a_lost_handshake_done_costs_one_round_trip(certificate):
    """The server's 1-RTT datagram with HANDSHAKE_DONE (its fourth, here) is lost. The
    client takes the acknowledgement of the PING it sent with its Finished as the
    handshake's confirmation (RFC 9001 4.1.2): confirmed one step (a round trip) later
    than in order, not at the server's loss timer. Before: 0.06 here, the server's PTO
    at an in-memory RTT; 1.5 s on the loaded gateway of
    test_connect_200_times_through_loss, twice that when the copy was lost too."""
    in_order = _exchange(certificate, ServerTickets(), None, set())
    lost = _exchange(certificate, ServerTickets(), None, {("down", 4)})
    assert in_order.confirmed and lost.confirmed and lost.received == b"N" * 300
    assert in_order.completed == lost.completed == 0.0
    assert in_order.confirmed_at == pytest.approx(0.01)
    assert lost.confirmed_at == pytest.approx(0.02)
