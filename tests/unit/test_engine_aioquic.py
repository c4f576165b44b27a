"""quicfs.transport.quic.engine_aioquic: aioquic behind the engine seam (issue 21 item 2).

Two engines talk in memory on a fake clock (:class:`Net`): an AioquicEngine with qh3's
Engine either way round, or two AioquicEngines. Each test asserts what the driver
relies on: qh3's event classes, the handshake confirmed, data intact, the certificate
pin, fresh-packet counts, hold bounding what the peer may send, the server's stream
limit, session tickets in qh3's form that resume, and BBR with its pacer in charge.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import os
import pickle
import random
import ssl
import types
from collections import defaultdict
from typing import Any

import pytest
import qh3.tls
import trio
from aioquic.quic.congestion.reno import RenoCongestionControl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from qh3._hazmat import pull_quic_header
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.packet import encode_quic_retry

from quicfs.cert import write_self_signed
from quicfs.errors import CertificateError
from quicfs.transport.aioquic_cc import BbrCongestionControl, BbrPacer
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.engine_aioquic import AioquicEngine
from quicfs.transport.quic.tickets import ServerTickets, TicketStore
from quicfs.transport.quic.tls import describe_failure

SERVER, CLIENT = ("127.0.0.1", 4433), ("127.0.0.1", 50000)
MIB = 1024 * 1024
BAD_CERTIFICATE = 0x100 + 42  # CRYPTO_ERROR + TLS alert 42 (RFC 9001 4.8)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return write_self_signed("localhost", tmp_path_factory.mktemp("cert"))


def server_config(cert: Any, **kwargs: Any) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=["smb"], **kwargs)
    config.load_cert_chain(str(cert.cert), str(cert.key))
    return config


def client_config(**kwargs: Any) -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=["smb"], server_name="localhost",
                             verify_mode=ssl.CERT_NONE, **kwargs)


class Net:
    """A client and a server engine joined by a link of ``delay`` each way that loses
    ``loss`` of the datagrams, on a fake clock. The server is made from the client's
    first Initial; a qh3 server first answers with a Retry, as the gateway does for a
    client that pads its Initial's datagram (qh3 2.1 would not fit its first flight in
    three times the packet, quic/server.py)."""

    def __init__(self, client: Any, make_server: Any, *, delay: float = 0.005,
                 loss: float = 0.0, seed: int = 1, retry: bool = False) -> None:
        self.client, self.server, self.make_server = client, None, make_server
        self.delay, self.loss, self.rng, self.retry = delay, loss, random.Random(seed), retry
        self.now = 0.0
        self.flight: list[tuple[float, int, bool, bytes]] = []
        self.seq = itertools.count()
        self.got: dict[str, dict[int, bytearray]] = {"client": defaultdict(bytearray),
                                                     "server": defaultdict(bytearray)}
        self.events: dict[str, list[Any]] = {"client": [], "server": []}
        self.tap: list[bytes] = []  # every datagram the client sent the server
        self.sent: dict[str, int] = {"client": 0, "server": 0}
        self._retry_cid = b""
        client.connect(SERVER, now=0.0)

    def _first(self, data: bytes) -> None:
        version, _, _, dcid, scid, token, *_ = pull_quic_header(data, 0, 8)
        if self.retry and not token:
            self._retry_cid = os.urandom(8)
            self._queue(True, encode_quic_retry(
                version=version, source_cid=self._retry_cid, destination_cid=scid,
                original_destination_cid=dcid, retry_token=b"token:" + dcid))
            return
        if token:
            self.server = self.make_server(original_destination_connection_id=token[6:],
                                           retry_source_connection_id=self._retry_cid)
        else:
            self.server = self.make_server(original_destination_connection_id=dcid)

    def _queue(self, to_client: bool, data: bytes) -> None:
        if self.rng.random() >= self.loss:
            heapq.heappush(self.flight, (self.now + self.delay, next(self.seq), to_client, data))

    def step(self, limit: float) -> None:
        """Send, move the clock to the next arrival or timer (at most to ``limit``),
        deliver, fire the timers that are due, take the events."""
        for name, engine in (("client", self.client), ("server", self.server)):
            if engine is None:
                continue
            for data, _ in engine.datagrams_to_send(self.now):
                self.sent[name] += 1
                self._queue(engine is self.server, data)
        # A microsecond after a timer, as a real event loop wakes (test_bbr.py).
        timers = [t + 1e-6 for e in (self.client, self.server)
                  if e is not None and (t := e.get_timer()) is not None]
        if self.flight:
            timers.append(self.flight[0][0])
        self.now = max(self.now, min([*timers, limit]))
        while self.flight and self.flight[0][0] <= self.now:
            _, _, to_client, data = heapq.heappop(self.flight)
            if to_client:
                self.client.receive([data], SERVER, self.now)
                continue
            self.tap.append(data)
            if self.server is None:
                self._first(data)
            if self.server is not None:
                self.server.receive([data], CLIENT, self.now)
        for engine in (self.client, self.server):
            if engine is not None and (t := engine.get_timer()) is not None and t <= self.now:
                engine.handle_timer(self.now)
        self.drain()

    def drain(self) -> None:
        for name, engine in (("client", self.client), ("server", self.server)):
            while engine is not None and (event := engine.next_event()) is not None:
                self.events[name].append(event)
                if isinstance(event, events.StreamDataReceived):
                    self.got[name][event.stream_id] += event.data

    def run(self, until: Any, seconds: float = 30.0) -> None:
        end = self.now + seconds
        while not until() and self.now < end:
            self.step(end)

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        self.run(lambda: self.now >= end, seconds + 1)

    def confirmed(self) -> bool:
        return self.client.confirmed and self.server is not None and self.server.confirmed


def aioquic_server(cert: Any, **kwargs: Any) -> Any:
    def make(**ids: Any) -> AioquicEngine:
        return AioquicEngine(configuration=server_config(cert), **ids, **kwargs)
    return make


def qh3_server(cert: Any) -> Any:
    def make(**ids: Any) -> Engine:
        return Engine(configuration=server_config(cert), **ids)
    return make


def failure_of(closed: events.ConnectionTerminated, client: Any, server_name: str) -> Any:
    """What quic/tls.py's describe_failure says of a client's handshake that ``closed``
    ended (for server ``gw:443``, dialled as ``server_name``)."""
    driver = types.SimpleNamespace(close_reason=closed.reason_phrase, quic=client,
                                   close_error_code=closed.error_code,
                                   handshake_done=trio.Event())
    return describe_failure(driver, "gw:443", 5.0, server_name)  # type: ignore[arg-type]


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ interop with qh3
@pytest.mark.parametrize("ours", ["client", "server"])
def test_a_mebibyte_each_way_with_qh3(cert: Any, ours: str) -> None:
    """AioquicEngine with qh3's Engine either way round: the handshake confirmed at both
    ends, ALPN smb, 1 MiB each way on stream 0 intact, and only qh3's event classes."""
    if ours == "client":
        net = Net(AioquicEngine(configuration=client_config()), qh3_server(cert), retry=True)
    else:
        net = Net(Engine(configuration=client_config()), aioquic_server(cert))
    up, down = os.urandom(MIB), os.urandom(MIB)
    net.client.send_stream_data(0, up, end_stream=True)
    answered = False

    def done() -> bool:
        nonlocal answered
        if not answered and len(net.got["server"][0]) == MIB:
            net.server.send_stream_data(0, down, end_stream=True)
            answered = True
        return len(net.got["client"][0]) == MIB

    net.run(done)
    assert net.confirmed()
    assert sha(net.got["server"][0]) == sha(up)
    assert sha(net.got["client"][0]) == sha(down)
    for side in ("client", "server"):
        kinds = {type(e) for e in net.events[side]}
        assert all(k.__module__ == "qh3.quic.events" for k in kinds), kinds
        completed = [e for e in net.events[side] if isinstance(e, events.HandshakeCompleted)]
        assert [e.alpn_protocol for e in completed] == ["smb"]
        assert events.StreamDataReceived in kinds
    ours_engine = net.client if ours == "client" else net.server
    assert ours_engine.get_peercert() is not None or ours == "server"
    if ours == "client":
        # The server's certificate as qh3 gives it: DER from public_bytes().
        der = bytes(net.client.get_peercert().public_bytes())
        pem = cert.cert.read_bytes()
        assert der == x509.load_pem_x509_certificate(pem).public_bytes(
            serialization.Encoding.DER)


def test_an_rsa_certificate_signs_through_qh3s_key(tmp_path: Any) -> None:
    """qh3's RSA key signs the aioquic server's CertificateVerify (RSA-PSS, RFC 8446
    4.4.3): a qh3 client, which checks the signature, confirms the handshake."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    paths = types.SimpleNamespace(cert=tmp_path / "rsa.crt", key=tmp_path / "rsa.key")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    net = Net(Engine(configuration=client_config()), aioquic_server(paths))
    net.run(net.confirmed, 5)
    assert net.confirmed()


# ------------------------------------------------------------------ the pin
def test_the_right_pin_connects(cert: Any) -> None:
    pin = cert.fingerprint.removeprefix("sha256:")
    net = Net(AioquicEngine(configuration=client_config(assert_fingerprint=pin)),
              aioquic_server(cert))
    net.client.send_stream_data(0, b"NEGOTIATE")
    net.run(lambda: net.confirmed() and bytes(net.got["server"][0]) == b"NEGOTIATE", 5)
    assert net.confirmed() and bytes(net.got["server"][0]) == b"NEGOTIATE"
    assert net.client.closing_error is None


def test_a_wrong_pin_fails_before_any_data_is_sent(cert: Any) -> None:
    """A pin that does not match ends the handshake with bad_certificate before the
    client's Finished: the data queued at once never reaches the server, and quic/client.py
    reports a pin failure."""
    client = AioquicEngine(configuration=client_config(assert_fingerprint="ab" * 32))
    net = Net(client, aioquic_server(cert))
    client.send_stream_data(0, b"NEGOTIATE")
    net.run(lambda: any(isinstance(e, events.ConnectionTerminated)
                        for e in net.events["client"]), 10)
    assert client.closing_error == BAD_CERTIFICATE
    assert not client.is_open and not client.confirmed
    closed = [e for e in net.events["client"] if isinstance(e, events.ConnectionTerminated)]
    assert closed[0].error_code == BAD_CERTIFICATE
    assert "Fingerprints did not match" in closed[0].reason_phrase
    net.run(lambda: net.server.closing_error is not None, 5)
    assert net.server.closing_error == BAD_CERTIFICATE  # the alert reached the server
    assert not net.got["server"] and not net.server.confirmed
    failure = failure_of(closed[0], client, "localhost")
    assert isinstance(failure, CertificateError)
    assert str(failure) == "certificate of gw:443 does not match the pinned fingerprint"


# ------------------------------------------------------------------ fresh packets
def test_receive_counts_only_fresh_authenticated_packets(cert: Any) -> None:
    """Only a packet that decrypted and was not seen before counts (RFC 9000 9.3): a
    replay, junk, and junk behind a live connection id count 0; in a batch or a GRO
    buffer, the fresh ones count."""
    net = Net(AioquicEngine(configuration=client_config()), aioquic_server(cert))
    net.run(net.confirmed, 5)
    net.run_for(0.1)
    client, server = net.client, net.server

    def ping(uid: int) -> bytes:
        client.send_ping(uid)
        net.now += 0.05  # past any pacing delay
        (data, _), = client.datagrams_to_send(net.now)
        return data

    old = net.tap[-1]  # the server has had it
    assert server.receive([old], CLIENT, net.now) == 0
    first = ping(1)
    assert server.receive([first], CLIENT, net.now) == 1
    assert server.receive([first], CLIENT, net.now) == 0
    assert server.receive([os.urandom(1200)], CLIENT, net.now) == 0
    behind_cid = first[:9] + os.urandom(len(first) - 9)  # our connection id, then junk
    assert server.receive([behind_cid], CLIENT, net.now) == 0
    assert server.receive([first, ping(2), ping(3)], CLIENT, net.now) == 2
    a, b = sorted((ping(4), ping(5)), key=len, reverse=True)
    assert server.receive_gro_buffer(a + b, len(a), CLIENT, net.now) == 2
    assert server.receive_gro_buffer(a + b, len(a), CLIENT, net.now) == 0
    assert server.closing_error is None and server.is_open


def test_an_initial_that_does_not_decrypt_leaves_the_server_unauthenticated(cert: Any
                                                                            ) -> None:
    client = AioquicEngine(configuration=client_config())
    client.connect(SERVER, now=0.0)
    first = client.datagrams_to_send(0.0)[0][0]
    dcid = pull_quic_header(first, 0, 8)[3]
    damaged = first[:60] + bytes(b ^ 0xFF for b in first[60:80]) + first[80:]
    server = aioquic_server(cert)(original_destination_connection_id=dcid)
    assert server.receive([damaged], CLIENT, 0.0) == 0
    assert not server.authenticated and server.closing_error is None
    assert server.receive([first], CLIENT, 0.0) == 1
    assert server.authenticated


# ------------------------------------------------------------------ hold
def test_hold_stops_the_peer_at_one_window_and_release_lets_it_finish(cert: Any) -> None:
    """While the server is held it raises no credit: the client stops at the stream
    window the server advertised (RFC 9000 4.1), exactly, however long it waits. After
    release() it finishes; the credit ahead of the reader never exceeds one window
    (aioquic alone doubles its windows as data arrives)."""
    window = 256 * 1024

    def make(**ids: Any) -> AioquicEngine:
        config = server_config(cert, max_stream_data=window, max_data=4 * window)
        return AioquicEngine(configuration=config, **ids)

    net = Net(AioquicEngine(configuration=client_config()), make)
    net.run(net.confirmed, 5)
    net.server.hold = True
    payload = os.urandom(4 * MIB)
    net.client.send_stream_data(0, payload, end_stream=True)
    net.run_for(5.0)
    stream = net.server._streams[0]
    assert stream.receiver.highest_offset == window  # stalled exactly at the window
    assert not net.got["server"]  # nothing handed on while held
    assert net.server.held_events > 0
    assert net.client.get_send_buffer_size(0) == len(payload) - window
    net.server.release()
    assert net.server.held_events == 0
    most_ahead = 0

    def done() -> bool:
        nonlocal most_ahead
        s = net.server._streams.get(0)
        if s is not None:
            most_ahead = max(most_ahead, s.max_stream_data_local - s.receiver.highest_offset)
        return len(net.got["server"][0]) == len(payload)

    net.run(done)
    assert sha(net.got["server"][0]) == sha(payload)
    assert 0 < most_ahead <= window


def test_a_connection_closed_while_held_still_reports_its_end(cert: Any) -> None:
    net = Net(AioquicEngine(configuration=client_config()), aioquic_server(cert))
    net.run(net.confirmed, 5)
    net.server.hold = True
    net.client.send_stream_data(0, b"x" * 1000)
    net.run_for(0.2)
    assert not net.got["server"]
    net.client.close(error_code=0, reason_phrase="bye")
    net.run(lambda: any(isinstance(e, events.ConnectionTerminated)
                        for e in net.events["server"]), 10)
    assert bytes(net.got["server"][0]) == b"x" * 1000  # handed on once closed
    assert [e.reason_phrase for e in net.events["server"]
            if isinstance(e, events.ConnectionTerminated)] == ["bye"]


# ------------------------------------------------------------------ stream limit
def test_a_server_with_one_bidi_stream_blocks_the_second(cert: Any) -> None:
    net = Net(AioquicEngine(configuration=client_config()),
              aioquic_server(cert, max_streams=(1, 0)))
    net.run(net.confirmed, 5)
    assert net.client._remote_max_streams_bidi == 1
    assert net.client._remote_max_streams_uni == 0
    net.client.send_stream_data(0, b"first")
    assert net.client.get_next_available_stream_id() == 4
    net.client.send_stream_data(4, b"second")
    net.run_for(1.0)
    assert dict(net.got["server"]) == {0: bytearray(b"first")}
    assert net.client._streams[4].is_blocked
    assert net.server.is_open


def test_a_qh3_client_gets_one_stream_from_an_aioquic_server(cert: Any) -> None:
    net = Net(Engine(configuration=client_config()), aioquic_server(cert, max_streams=(1, 0)))
    net.run(net.confirmed, 5)
    net.client.send_stream_data(0, b"first")
    try:
        net.client.send_stream_data(4, b"second")
    except Exception:
        pass  # refused at once is as good as held back
    net.run_for(1.0)
    assert dict(net.got["server"]) == {0: bytearray(b"first")}
    assert net.server.is_open


# ------------------------------------------------------------------ tickets
@pytest.mark.parametrize("second", ["aioquic", "qh3"])
def test_a_ticket_in_qh3s_form_resumes(cert: Any, tmp_path: Any, second: str) -> None:
    """The aioquic server's ticket reaches the client as a qh3 SessionTicket, survives
    the ticket store (which unpickles only qh3 classes), and resumes a connection; the
    server keeps its tickets in qh3's form too (ServerTickets)."""
    tickets, got = ServerTickets(), []
    make = aioquic_server(cert, session_ticket_fetcher=tickets.take,
                          session_ticket_handler=tickets.add)
    net = Net(AioquicEngine(configuration=client_config(),
                            session_ticket_handler=got.append), make)
    net.run(lambda: net.confirmed() and bool(got), 5)
    assert got and all(type(t) is qh3.tls.SessionTicket for t in got)
    assert len(tickets) == len(got)
    store = TicketStore(str(tmp_path))
    store.save("localhost", 443, "p", got[-1])
    ticket = store.load("localhost", 443, "p")
    assert ticket == got[-1] and pickle.dumps(ticket) == pickle.dumps(got[-1])
    kind = AioquicEngine if second == "aioquic" else Engine
    net = Net(kind(configuration=client_config(session_ticket=ticket)), make)
    net.client.send_stream_data(0, b"again")
    net.run(lambda: bytes(net.got["server"][0]) == b"again", 5)
    for side in ("client", "server"):
        done = [e for e in net.events[side] if isinstance(e, events.HandshakeCompleted)]
        assert [(e.session_resumed, e.early_data_accepted) for e in done] == [(True, False)]


def test_a_qh3_servers_ticket_resumes_an_aioquic_client(cert: Any) -> None:
    tickets, got = ServerTickets(), []

    def make(**ids: Any) -> Engine:
        return Engine(configuration=server_config(cert), session_ticket_fetcher=tickets.take,
                      session_ticket_handler=tickets.add, **ids)

    net = Net(AioquicEngine(configuration=client_config(), session_ticket_handler=got.append),
              make, retry=True)
    net.run(lambda: net.confirmed() and bool(got), 5)
    assert got and type(got[-1]) is qh3.tls.SessionTicket
    net = Net(AioquicEngine(configuration=client_config(session_ticket=got[-1])), make,
              retry=True)
    net.run(net.confirmed, 5)
    done = [e for e in net.events["client"] if isinstance(e, events.HandshakeCompleted)]
    assert [e.session_resumed for e in done] == [True]


# ------------------------------------------------------------------ congestion control
def test_bbr_and_its_pacer_run_the_connection_and_learn_of_idle_time(cert: Any) -> None:
    """The default engine runs our BBR with its pacer; while a stream has data to send
    the sender is never called app-limited, and once it has none (and cwnd has room)
    it is (draft-ietf-ccwg-bbr "app-limited")."""
    client = AioquicEngine(configuration=client_config())
    cc = client._loss._cc
    assert isinstance(cc, BbrCongestionControl) and isinstance(client._loss._pacer, BbrPacer)
    calls: list[int] = []
    real = cc.set_app_limited

    def counted() -> None:
        calls.append(client.get_send_buffer_size(0))
        real()

    cc.set_app_limited = counted  # type: ignore[method-assign]
    net = Net(client, aioquic_server(cert), delay=0.010)
    net.run(net.confirmed, 5)
    calls.clear()
    payload = os.urandom(2 * MIB)
    client.send_stream_data(0, payload)
    net.run(lambda: len(net.got["server"][0]) == len(payload))
    net.run_for(0.5)
    # Each call recorded the bytes still waiting to be sent: none, every time.
    assert calls and set(calls) == {0}
    assert cc.bbr is not None and cc.bbr.bw > 0
    assert client.figure("smoothed_rtt") == pytest.approx(0.020, rel=0.5)
    assert client.figure("congestion_window") == cc.congestion_window
    assert client.figure("bytes_in_flight") == 0
    assert client.figure("loss_total") == 0


def test_reno_runs_without_our_pacer(cert: Any) -> None:
    client = AioquicEngine(configuration=client_config(), cc="reno")
    assert isinstance(client._loss._cc, RenoCongestionControl)
    assert not isinstance(client._loss._pacer, BbrPacer)
    assert client.figure("smoothed_rtt") is None  # no sample yet
    net = Net(client, aioquic_server(cert, cc="cubic"))
    client.send_stream_data(0, b"r" * 100_000, end_stream=True)
    net.run(lambda: len(net.got["server"][0]) == 100_000, 10)
    assert bytes(net.got["server"][0]) == b"r" * 100_000


def test_ten_megabytes_through_one_percent_loss(cert: Any) -> None:
    """BBR both ends over 25 ms each way with 1 % loss each way: 10 MB intact, and the
    engine counted the losses."""
    payload = os.urandom(10_000_000)
    net = Net(AioquicEngine(configuration=client_config()), aioquic_server(cert),
              delay=0.025, loss=0.01, seed=3)
    net.client.send_stream_data(0, payload, end_stream=True)
    net.run(lambda: len(net.got["server"][0]) == len(payload), 120)
    assert sha(net.got["server"][0]) == sha(payload)
    lost = net.client.figure("loss_total")
    assert lost is not None and 0.002 * net.sent["client"] < lost < 0.05 * net.sent["client"]


# ------------------------------------------------------------------ what the driver says
def test_a_name_mismatch_is_a_certificate_error_with_the_names(cert: Any) -> None:
    """aioquic says "hostname 'x' doesn't match <pattern>"; tls.py's describe_failure reads it
    as qh3's failure is read: a CertificateError that names what the certificate is for."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["smb"],
                               server_name="other.example", cadata=cert.cert.read_bytes())
    client = AioquicEngine(configuration=config)
    net = Net(client, aioquic_server(cert))
    net.run(lambda: any(isinstance(e, events.ConnectionTerminated)
                        for e in net.events["client"]), 10)
    closed = [e for e in net.events["client"] if isinstance(e, events.ConnectionTerminated)]
    assert [e.error_code for e in closed] == [BAD_CERTIFICATE]
    assert closed[0].reason_phrase == ("hostname 'other.example' doesn't match "
                                       "DNSPattern(pattern=b'localhost')")
    failure = failure_of(closed[0], client, "other.example")
    assert isinstance(failure, CertificateError)
    assert str(failure) == "certificate of gw:443 is not valid for that name (it is for localhost)"


def test_a_retry_is_an_answer(cert: Any) -> None:
    """A client that acted on a Retry knows the server is there (its tag binds it to our
    Initial, RFC 9001 5.8): ``authenticated``, so open_quic may fall back to a full
    handshake when the path fails right after it. A Retry for another Initial is not."""
    client = AioquicEngine(configuration=client_config())
    client.connect(SERVER, now=0.0)
    (hello, _), = client.datagrams_to_send(0.0)
    version, _, _, dcid, scid, *_ = pull_quic_header(hello, 0, 8)
    forged = encode_quic_retry(version=version, source_cid=os.urandom(8), destination_cid=scid,
                               original_destination_cid=os.urandom(8), retry_token=b"t")
    client.receive([forged], SERVER, 0.01)
    assert not client.authenticated
    retry = encode_quic_retry(version=version, source_cid=os.urandom(8), destination_cid=scid,
                              original_destination_cid=dcid, retry_token=b"t")
    client.receive([retry], SERVER, 0.01)
    assert client.authenticated
    assert not AioquicEngine(configuration=server_config(cert),
                             original_destination_connection_id=dcid).authenticated


def test_a_ping_goes_alone_and_at_once_when_the_window_is_full(cert: Any) -> None:
    """The driver's PING (a new client address to validate, peer_path.py) leaves in a
    packet of its own while the congestion window is full of stream data: small enough
    for three times a client's ACK (RFC 9000 8.1), and its acknowledgement comes back as
    qh3's PingAcknowledged with the driver's uid."""
    net = Net(AioquicEngine(configuration=client_config()), aioquic_server(cert))
    net.client.send_stream_data(0, b"open")
    net.run(lambda: net.confirmed() and bytes(net.got["server"][0]) == b"open", 5)
    server = net.server
    server.send_stream_data(0, os.urandom(4 * MIB))
    sent = 0
    for _ in range(200):  # fill the window; nothing reaches the client
        net.now += 0.001
        sent += len(server.datagrams_to_send(net.now))
    assert sent > 0 and server.datagrams_to_send(net.now) == []
    assert server._loss.bytes_in_flight >= server._loss.congestion_window - 1500
    server.send_ping(1 << 32)
    out = server.datagrams_to_send(net.now)
    assert len(out) == 1 and len(out[0][0]) <= 60
    net.client.receive([out[0][0]], SERVER, net.now)
    net.now += 0.030  # past the client's ACK delay
    net.client.handle_timer(net.now)
    for data, _ in net.client.datagrams_to_send(net.now):
        server.receive([data], CLIENT, net.now)
    acked = []
    while (event := server.next_event()) is not None:
        if isinstance(event, events.PingAcknowledged):
            acked.append(event.uid)
    assert acked == [1 << 32]
