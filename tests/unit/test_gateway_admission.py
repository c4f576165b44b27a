"""The gateway's pure parts that face the internet: Retry tokens (RFC 9000 8.1.2), the
refusal log that an attacker cannot flood, the bounded ticket store, the NEGOTIATE check
before any backend is dialled, and the engine's stream limits and authentication
count (quicfs/transport/quic/engine.py) on a real qh3 pair in memory."""

from __future__ import annotations

import datetime
import logging
import ssl

import pytest
from qh3._hazmat import pull_quic_header
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.tls import CipherSuite, SessionTicket

from quicfs.cert import write_self_signed
from quicfs.gateway import Refused, check_negotiate
from quicfs.refusals import Refusals
from quicfs.smb2.negotiate import NegotiateRequest
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.retry import RetryTokens
from quicfs.transport.quic.tickets import ServerTickets

A, B = ("192.0.2.1", 4000), ("192.0.2.1", 4001)
ODCID, RCID = b"\x01" * 8, b"\x02" * 8


# ------------------------------------------------------------------ Retry tokens
def test_a_token_is_good_for_its_address_and_connection_id_for_a_short_while() -> None:
    tokens = RetryTokens()
    token = tokens.make(A, ODCID, RCID, now=100.0)
    assert tokens.check(A, token, RCID, now=100.5) == ODCID
    assert tokens.check(B, token, RCID, now=100.5) is None  # another port
    assert tokens.check(("192.0.2.2", 4000), token, RCID, now=100.5) is None
    assert tokens.check(A, token, b"\x03" * 8, now=100.5) is None  # another Retry's
    assert tokens.check(A, token, RCID, now=100.0 + tokens.lifetime + 0.1) is None


def test_a_token_cannot_be_forged_or_altered() -> None:
    tokens = RetryTokens()
    token = bytearray(tokens.make(A, ODCID, RCID, now=1.0))
    for i in range(len(token)):
        bad = bytearray(token)
        bad[i] ^= 0x01
        assert tokens.check(A, bytes(bad), RCID, now=1.0) is None, i
    assert RetryTokens().check(A, bytes(token), RCID, now=1.0) is None  # another key
    for junk in (b"", b"\x00" * 8, b"\xff" * 200):
        assert tokens.check(A, junk, RCID, now=1.0) is None


def test_ipv6_addresses_are_bound_too() -> None:
    tokens = RetryTokens()
    token = tokens.make(("2001:db8::1", 443, 0, 0), ODCID, RCID, now=0.0)
    assert tokens.check(("2001:db8::1", 443, 0, 0), token, RCID, now=0.0) == ODCID
    assert tokens.check(("2001:db8::2", 443, 0, 0), token, RCID, now=0.0) is None


# ------------------------------------------------------------------ refusals
def test_refusals_count_every_one_and_log_each_kind_once_per_interval(caplog) -> None:
    log = logging.getLogger("test.refusals")
    refusals = Refusals(log, interval=10.0)
    with caplog.at_level(logging.INFO, logger="test.refusals"):
        for i in range(1000):
            refusals.note("Initial that did not decrypt", f"from 192.0.2.{i % 250}:1", i / 100)
        refusals.note("Retry sent", "to 192.0.2.1:1", 5.0)
        refusals.note("Initial that did not decrypt", "from 192.0.2.9:1", 10.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Initial that did not decrypt: from 192.0.2.0:1",
        "Retry sent: to 192.0.2.1:1",
        "Initial that did not decrypt: from 192.0.2.9:1 (and 999 more in 10 s)",
    ]
    assert refusals.total == {"Initial that did not decrypt": 1001, "Retry sent": 1}
    assert refusals.since_last_summary() == {"Initial that did not decrypt": 1001,
                                             "Retry sent": 1}
    refusals.note("Retry sent", "to x", 30.0)
    assert refusals.since_last_summary() == {"Retry sent": 1}
    assert refusals.since_last_summary() == {}


# ------------------------------------------------------------------ tickets
def _ticket(label: bytes, valid_for: float = 3600) -> SessionTicket:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # as qh3 keeps it
    return SessionTicket(age_add=0, cipher_suite=CipherSuite.AES_128_GCM_SHA256,
                         not_valid_after=now + datetime.timedelta(seconds=valid_for),
                         not_valid_before=now, resumption_secret=b"s",
                         server_name="x", ticket=label)


def test_the_ticket_store_is_bounded_and_each_ticket_is_used_once() -> None:
    store = ServerTickets(max_count=100)
    for i in range(10_000):
        store.add(_ticket(i.to_bytes(4, "big")))
    assert len(store) == 100
    assert store.take((0).to_bytes(4, "big")) is None  # the oldest went first
    last = (9_999).to_bytes(4, "big")
    assert store.take(last) is not None
    assert store.take(last) is None


def test_old_and_expired_tickets_are_not_taken() -> None:
    store = ServerTickets(max_age=0.0)
    store.add(_ticket(b"a"))
    assert store.take(b"a") is None
    store = ServerTickets()
    store.add(_ticket(b"b", valid_for=-1))
    assert store.take(b"b") is None


# ------------------------------------------------------------------ NEGOTIATE check
def _frame(msg: bytes) -> bytes:
    return b"\x00" + len(msg).to_bytes(3, "big") + msg


def test_only_an_smb2_negotiate_request_opens_the_backend() -> None:
    from quicfs.smb2.header import Header

    good = _frame(Header(command=0).pack() + NegotiateRequest().pack())
    check_negotiate(good)
    bad = [
        _frame(Header(command=1).pack() + NegotiateRequest().pack()),  # SESSION_SETUP
        _frame(b"\xffSMB" + good[8:]),  # SMB1
        b"\x01" + good[1:],  # not a Direct TCP header
        good[:-1],  # shorter than it says
        _frame(b"GET / HTTP/1.1\r\n" * 8),
    ]
    for frame in bad:
        with pytest.raises(Refused, match="not an SMB2 NEGOTIATE"):
            check_negotiate(frame)


# ------------------------------------------------------------------ the engine
@pytest.fixture(scope="module")
def server_config(tmp_path_factory) -> QuicConfiguration:
    files = write_self_signed("localhost", tmp_path_factory.mktemp("cert"))
    config = QuicConfiguration(is_client=False, alpn_protocols=["smb"])
    config.load_cert_chain(str(files.cert), str(files.key))
    return config


def _handshake(server_config: QuicConfiguration) -> tuple[QuicConnection, Engine]:
    client = QuicConnection(configuration=QuicConfiguration(
        is_client=True, alpn_protocols=["smb"], verify_mode=ssl.CERT_NONE))
    client.connect(B, now=0.0)
    server: Engine | None = None
    now = 0.0
    for _ in range(10):
        now += 0.01
        for data, _ in client.datagrams_to_send(now):
            if server is None:
                dcid = pull_quic_header(data, 0, 8)[3]
                server = Engine(configuration=server_config, max_streams=(1, 0),
                                original_destination_connection_id=dcid)
            server.receive([data], A, now)
        assert server is not None
        for data, _ in server.datagrams_to_send(now):
            client.receive_datagram(data, B, now)
    assert server is not None
    return client, server


def test_the_server_advertises_one_stream_and_counts_authenticated_packets(server_config
                                                                           ) -> None:
    client, server = _handshake(server_config)
    params = client._tls.remote_transport_parameters  # type: ignore[union-attr]
    assert (params.initial_max_streams_bidi, params.initial_max_streams_uni) == (1, 0)
    assert server.figure("smoothed_rtt") == pytest.approx(0.01, abs=0.005)
    # Junk carrying the live connection id is not authenticated; a real packet is, once.
    junk = b"\x40" + server.host_cid + bytes(40)
    assert server.receive([junk], A, 1.0) == 0
    client.send_ping(7)
    (packet, _), = client.datagrams_to_send(1.0)
    assert server.receive([packet], A, 1.0) == 1
    assert server.receive([packet], A, 1.0) == 0  # a replay


def test_a_figure_not_known_yet_is_none(server_config) -> None:
    engine = Engine(configuration=server_config, original_destination_connection_id=ODCID)
    assert engine.figure("smoothed_rtt") is None
    assert not engine.authenticated
    engine.receive([b"\xc0\x00\x00\x00\x01" + bytes(1195)], A, 0.0)  # does not decrypt
    assert not engine.authenticated


def test_what_qh3_counts_of_a_first_datagram(server_config) -> None:
    from quicfs.transport.quic.admission import first_flight_size, packets_length

    client = QuicConnection(configuration=QuicConfiguration(
        is_client=True, alpn_protocols=["smb"], verify_mode=ssl.CERT_NONE))
    client.connect(B, now=0.0)
    first = client.datagrams_to_send(0.0)[0][0]
    assert packets_length(first, 8) == len(first) >= 1200
    # Padding after the Initial (aioquic's way) is not counted, nor is junk.
    initial = first[:pull_quic_header(first, 0, 8)[9]]
    assert packets_length(initial[:500] + bytes(700), 8) < 1200
    assert packets_length(bytes(1200), 8) == 0
    # Such a client cannot buy the first flight: it is asked for a Retry first.
    assert 3 * 500 < first_flight_size(server_config) < 3 * 1200
