"""The QUIC engine: qh3's ``QuicConnection`` and the few things we need that qh3 2.1 does
not offer in public. Every reach into qh3's internals is here, and nowhere else.

- :meth:`Engine.receive` feeds datagrams and says how many packets in them the engine
  authenticated and had not seen before. Only such a packet may move a connection to a
  new address (RFC 9000 9.3): junk or a replay from an on-path attacker must not.
- :attr:`Engine.hold` stops taking events out of qh3's core. qh3 gives the peer new
  flow-control credit (MAX_STREAM_DATA, MAX_DATA) as stream data is taken out of its
  core, not as the application reads it; while a reader is behind, holding the events
  withholds the credit, so the peer stops at one window (RFC 9000 4.1) and memory stays
  bounded.
- ``max_streams``: the stream counts a server advertises (initial_max_streams_bidi and
  _uni, RFC 9000 18.2). qh3 advertises 100 and 103 whatever it is told; SMB over QUIC
  needs one bidirectional stream (MS-SMB2 2.1).
- :meth:`Engine.figure`: the path's figures (RTT, window), ``None`` while not known yet.
- :attr:`Engine.confirmed`: the handshake is confirmed (RFC 9001 4.1.2); qh3 emits no
  event for a client's HANDSHAKE_DONE. A client also takes the acknowledgement of a PING
  sent with its Finished as confirmation (4.1.2 allows it): a lost HANDSHAKE_DONE then
  costs a round trip, not the server's loss timer.
- :meth:`Engine.handshake_facts`: what the handshake showed of the server (cipher, its
  certificates, whether it asked for ours and naming which CAs), for ``quicfs probe``;
  :func:`verify_server_chain`: qh3's own check of a chain, as its handshake makes it.
- A client keeps the server's Handshake and 1-RTT packets that arrive before the packet
  that makes their keys (reordering, RFC 9000 5.2.1, RFC 9001 5.7) and reads them once
  the keys exist: dropped, they cost the server's loss timer, a second or more.
- A client never sends 0-RTT: qh3 2.1's client loses the connection when 0-RTT data
  is to be sent again before its 1-RTT keys exist (a lost packet early in the
  handshake). Resumption stays (no certificate, a shorter handshake).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from qh3._hazmat import Buffer, pull_quic_header
from qh3._hazmat import Certificate as X509Certificate
from qh3.quic import events
from qh3.quic.connection import QuicConnection
from qh3.quic.packet import (
    QuicPacketType,
    pull_quic_transport_parameters,
    push_quic_transport_parameters,
)
from qh3.tls import ExtensionType, verify_certificate

from quicfs.transport.routes import on_link

#: qh3's core states in which the connection is still open.
_OPEN_STATES = ("first_flight", "connected")
#: The certificate_authorities extension of a CertificateRequest (RFC 8446 4.2.4).
_CERTIFICATE_AUTHORITIES = 47
#: Packets a client keeps for keys it does not have yet: a server's flight is a few
#: datagrams (RFC 9001 5.7 asks for a bound).
MAX_EARLY_PACKETS = 16
#: The uid of the PING a client sends as its handshake completes (apart from the
#: driver's, 0 and up, and peer_path.py's, 1 << 32 and up).
CONFIRM_PING = 1 << 48


@dataclass(frozen=True, slots=True)
class HandshakeFacts:
    """What a client's handshake showed of the server, as far as it got, in plain values."""

    #: The QUIC version in use (RFC 9000 15), 0 before the connection starts.
    quic_version: int
    #: The TLS 1.3 cipher suite's IANA name (TLS_AES_128_GCM_SHA256), None before the
    #: ServerHello.
    cipher: str | None
    #: The server's certificates, DER, its own first.
    chain: tuple[bytes, ...]
    #: The server sent a CertificateRequest (RFC 8446 4.3.2).
    certificate_requested: bool
    #: The distinguished names (DER) of the CAs the request named, if it named any.
    certificate_authorities: tuple[bytes, ...]
    session_resumed: bool


class Engine(QuicConnection):
    def __init__(self, *, max_streams: tuple[int, int] | None = None, **kwargs: Any) -> None:
        config = kwargs.get("configuration")
        ticket = getattr(config, "session_ticket", None)
        if config is not None and config.is_client and ticket is not None \
                and ticket.max_early_data_size is not None:
            # A client resumes without 0-RTT: the ticket is offered as one that allows no
            # early data (RFC 8446 4.2.10). When qh3 2.1's client has 0-RTT data in
            # flight and its loss timer fires before the 1-RTT keys are installed (a
            # ClientHello, ServerHello or the server's Handshake flight lost), it builds
            # its next application packet at the 1-RTT level: sending fails ("packet
            # protection failed: missing OneRtt packet key"), the connection is dead and
            # the server is left with a half-open one.
            kwargs["configuration"] = replace(
                config, session_ticket=replace(ticket, max_early_data_size=None))
        super().__init__(**kwargs)
        self._max_streams = max_streams
        #: While True (and the connection open), events stay in qh3's core: no new
        #: flow-control credit goes to the peer.
        self.hold = False
        #: Events qh3's core queued while held (as :meth:`receive` saw them).
        self.held_events = 0
        #: A client's packets that came before their keys (:meth:`_receive_packet`), with
        #: the size of the datagram each came in.
        self._early: list[tuple[bytes, int]] = []
        #: A client's CONFIRM_PING is on its way (:meth:`_confirm_by_ack`): None before
        #: the handshake completes, False once acknowledged or not to be sent.
        self._confirming: bool | None = None

    # -- receiving
    def receive(self, datagrams: list[bytes], addr: Any, now: float) -> int:
        """Feed datagrams that came from ``addr``; the number of packets in them that the
        engine authenticated and had not received before."""
        core = self._core
        if core is None:
            for data in datagrams:
                self.receive_datagram(data, addr, now)
            return 0
        address = self._normalize_address(addr)
        if self._is_client and not self._handshake_complete:
            for data in datagrams:
                self._receive_client_handshake(data, address, now)
            return 0
        if not self._handshake_complete:
            return sum(self._receive_handshake(data, address, now) for data in datagrams)
        if len(datagrams) == 1:
            report = self._call_core(core.receive_datagram, datagrams[0], address, now,
                                     len(datagrams[0]))
        else:
            report = self._call_core(core.receive_many_datagrams, datagrams, address, now)
        if self.hold:
            # Each frame that makes an event costs memory while held (a one-byte STREAM
            # frame, a DATA_BLOCKED): the driver bounds their count.
            self.held_events += int(report[5])
        self._drain_core()
        return int(report[2])

    def _receive_handshake(self, data: bytes, address: Any, now: float) -> int:
        """A datagram during the handshake, fed as qh3's receive_datagram feeds it (a
        packet at a time: TLS takes an Initial's CRYPTO before the Handshake packet of
        the same datagram is read), counting what the core accepted. A client keeps the
        packets the core could not read yet (:meth:`_receive_client_handshake`)."""
        self._log_datagram("datagrams_received", data)
        fresh = offset = 0
        cid_length = self._configuration.connection_id_length
        while offset < len(data):
            try:
                end = pull_quic_header(data, offset, cid_length)[9]
            except ValueError:
                end = len(data)
            if end <= offset:
                end = len(data)
            fresh += self._receive_packet(data[offset:end], len(data), address, now)
            offset = end
        return fresh

    def _receive_packet(self, packet: bytes, size: int, address: Any, now: float) -> int:
        """Feed one packet of a ``size``-byte datagram; 1 if the core accepted it. A
        client's Handshake or 1-RTT packet that it refused before its handshake
        completed is kept for :meth:`_read_early`."""
        report = self._call_core(self._core.receive_datagram,  # type: ignore[union-attr]
                                 packet, address, now, size)
        if report[2]:
            self._log_packet("packet_received", packet, len(packet))
            self._learn_remote_source_cid(packet)
        elif self._is_client and not self._handshake_complete \
                and _packet_type(packet) != QuicPacketType.INITIAL \
                and len(self._early) < MAX_EARLY_PACKETS:
            self._early.append((packet, size))
        self._drain_core()
        return int(report[2])

    def _receive_client_handshake(self, data: bytes, address: Any, now: float) -> None:
        """A client's datagram before its handshake completed. The server's flight is
        several datagrams (Initial with the ServerHello, Handshake, 1-RTT), and a path
        that reorders them hands over Handshake or 1-RTT packets before the packet that
        makes their keys: the client may keep them for those keys (RFC 9000 5.2.1, RFC
        9001 5.7). Dropped, they are sent again only when the server's loss timer fires
        (RFC 9002 6.2: a second or more while its RTT is unknown or inflated), and a
        second loss on top of that doubles the wait: a resumed handshake that missed
        its 5 s through 2 % loss."""
        if self._receive_version_negotiation(data, address, now) \
                or self._receive_retry(data, address, now):
            self._early.clear()  # a new connection in all but name: new keys
            return
        if self._receive_handshake(data, address, now) and self._early:
            self._read_early(address, now)
        if self._handshake_complete and self._confirming is None:
            # RFC 9001 4.1.2: a client MAY take the handshake as confirmed once a 1-RTT
            # packet of its own is acknowledged: the server reads 1-RTT only once the
            # handshake is complete at its end (5.7), our Finished checked. Without
            # this, a lost HANDSHAKE_DONE costs the server's loss timer (1.5 s seen
            # under load; twice lost, a resumed connect missed its 5 s). Not with a
            # certificate of ours: a server that read 1-RTT early could still refuse it.
            self._confirming = self._configuration.certificate is None
            if self._confirming:
                self.send_ping(CONFIRM_PING)

    def _read_early(self, address: Any, now: float) -> None:
        """Feed again the packets kept for keys that were missing, while a pass makes
        progress (a Handshake packet kept may bring the keys a kept 1-RTT one needs);
        once the handshake has completed, what is still unreadable is dropped."""
        progress = True
        while progress and self._early:
            early, self._early = self._early, []
            progress = False
            for packet, size in early:
                progress = bool(self._receive_packet(packet, size, address, now)) or progress
        if self._handshake_complete:
            self._early.clear()

    @property
    def authenticated(self) -> bool:
        """The engine has accepted at least one packet of this connection: an Initial
        that did not decrypt leaves this False."""
        return self._core is not None and bool(self._core.received_authenticated_packet)

    @property
    def confirmed(self) -> bool:
        """The handshake is confirmed (RFC 9001 4.1.2): a server at its end, a client
        once the server's HANDSHAKE_DONE arrived."""
        return bool(self._handshake_confirmed)

    @property
    def closing_error(self) -> int | None:
        """The error code the engine closed the connection with, itself or at the peer's
        word; None while it is open."""
        event = self._close_event
        return None if event is None else int(event.error_code)

    @property
    def is_open(self) -> bool:
        return self._core is not None and self._core.state in _OPEN_STATES

    def _drain_core(self) -> None:
        if self.hold and self.is_open:
            return
        super()._drain_core()
        if self._confirming:
            self._confirm_by_ack()

    def _confirm_by_ack(self) -> None:
        """The acknowledgement of CONFIRM_PING, if it came, confirms the handshake (RFC
        9001 4.1.2) as HANDSHAKE_DONE does in qh3; the event is ours, not passed on."""
        for event in self._events:
            if isinstance(event, events.PingAcknowledged) and event.uid == CONFIRM_PING:
                self._events.remove(event)
                self._confirming = False
                if not self._handshake_confirmed:
                    self._handshake_confirmed = True
                    self._core.handshake_confirmed()  # type: ignore[union-attr]
                return

    def release(self) -> None:
        """End :attr:`hold` and take out what waited."""
        self.hold = False
        self.held_events = 0
        if self._core is not None:
            self._drain_core()

    def _log_packets(self, event: str, data: bytes) -> None:
        # qh3 parses the header of every packet it sends, to log it, even with no logger
        # (a few percent of a busy gateway): with none, skip it.
        if self._quic_logger is not None:
            super()._log_packets(event, data)

    # -- per-packet paths without qh3's logging calls (issue 21 item 4: the engine's cost
    # per 1452-byte packet bounds loopback QUIC, and with no qlog these calls, and the
    # slice per GRO segment made only to log it, are pure overhead)
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        core = self._core
        if core is None or self._quic_logger is not None:
            return super().datagrams_to_send(now)
        out = []
        while (transmit := self._call_core(core.poll_transmit, now)) is not None:
            out.append((transmit[0], transmit[1]))
        return out

    def receive_gro_buffer(self, buffer: bytes, segment_size: int, addr: Any,
                           now: float) -> None:
        core = self._core
        if core is not None and not self._handshake_complete and segment_size > 0:
            # Datagram by datagram, as receive() takes them during the handshake.
            self.receive([buffer[i:i + segment_size]
                          for i in range(0, len(buffer), segment_size)], addr, now)
            return
        if core is None or not self._handshake_complete or self._quic_logger is not None \
                or segment_size <= 0:
            super().receive_gro_buffer(buffer, segment_size, addr, now)
            return
        self._call_core(core.receive_gro_buffer, buffer, segment_size,
                        self._normalize_address(addr), now)
        self._drain_core()

    # -- the path's figures
    def figure(self, name: str) -> float | None:
        """A figure qh3's core keeps (``smoothed_rtt``, ``congestion_window``,
        ``bytes_in_flight``, ``loss_total``); None before the connection starts or while
        qh3 has no value (no RTT sample yet)."""
        value = getattr(self._core, name, None) if self._core is not None else None
        if callable(value):
            value = value()
        return None if value is None else float(value)

    # -- what the handshake showed
    def handshake_facts(self) -> HandshakeFacts:
        """What the handshake showed of the server so far; also after it failed."""
        context = self.tls
        cipher = self.get_cipher()
        request = getattr(context, "_certificate_request", None)
        authorities: list[bytes] = []
        for kind, data in getattr(request, "other_extensions", None) or ():
            if kind == _CERTIFICATE_AUTHORITIES:
                authorities += _opaque_list(data)
        leaf = self.get_peercert()
        chain = [leaf, *self.get_issuercerts()] if leaf is not None else []
        return HandshakeFacts(
            quic_version=int(getattr(self, "_version", 0) or 0),
            cipher=f"TLS_{cipher.name}" if cipher is not None else None,
            chain=tuple(bytes(cert.public_bytes()) for cert in chain),
            certificate_requested=request is not None,
            certificate_authorities=tuple(authorities),
            session_resumed=bool(context is not None and context.session_resumed),
        )

    # -- what a server advertises
    def _create_tls(self, remote_source_cid: bytes | None) -> Any:
        bridge = super()._create_tls(remote_source_cid)
        if self._max_streams is None:
            return bridge
        serialize = bridge.serialize_transport_parameters
        bidi, uni = self._max_streams

        def limited() -> bytes:
            params = pull_quic_transport_parameters(Buffer(data=serialize()))
            params.initial_max_streams_bidi = bidi
            params.initial_max_streams_uni = uni
            buf = Buffer(capacity=4096)
            push_quic_transport_parameters(buf, params)
            return bytes(buf.data)

        # The bridge serialised its parameters when it was made, and does again when the
        # version changes (RFC 9368): both times with our counts.
        bridge.serialize_transport_parameters = limited
        bridge.tls.handshake_extensions = [
            (ExtensionType.QUIC_TRANSPORT_PARAMETERS, limited())
        ]
        return bridge


def verify_server_chain(chain: list[bytes], server_name: str, *, cafile: str | None,
                        capath: str | None, check_name: bool = True) -> str | None:
    """What a client handshake under ``CERT_REQUIRED`` says of the server's ``chain`` (DER,
    its own first) with these CAs: None if it passes, else qh3's reason. The same call
    qh3's handshake makes (``verify_certificate``), so the same verdict."""
    try:
        verify_certificate(certificate=X509Certificate(chain[0]),
                           chain=[X509Certificate(der) for der in chain[1:]],
                           cafile=cafile, capath=capath, server_name=server_name,
                           assert_server_name=check_name)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _packet_type(packet: bytes) -> int | None:
    """A long-header packet's type (QUIC v1 and v2 alike), None for a short header
    (1-RTT) or one that does not parse."""
    if not packet or not packet[0] & 0x80:
        return None
    try:
        return int(pull_quic_header(packet, 0, 0)[1])
    except ValueError:
        return None


def _opaque_list(data: bytes) -> list[bytes]:
    """The items of a TLS vector of 2-byte-length items inside a 2-byte-length vector
    (RFC 8446 4.2.4: ``DistinguishedName authorities<3..2^16-1>``); what is cut short is
    left out."""
    items = []
    end = min(len(data), 2 + int.from_bytes(data[:2], "big"))
    at = 2
    while at + 2 <= end:
        size = int.from_bytes(data[at:at + 2], "big")
        if at + 2 + size > end:
            break
        items.append(bytes(data[at + 2:at + 2 + size]))
        at += 2 + size
    return items


#: Congestion controllers, each with the engine that carries it: qh3's own (CUBIC family,
#: in its Rust core; the faster engine), or our BBR (bbr.py) on aioquic, which qh3 cannot
#: take. "auto" picks by the route to the peer (:func:`controller_for`); docs/performance.md
#: has the figures behind it.
CONTROLLERS = ("auto", "cubic", "bbr")
DEFAULT_CC = "auto"


def controller_for(cc: str | None, peer: object) -> str:
    """The controller ``cc`` names for a connection with ``peer`` (an address tuple).
    auto: cubic toward a peer on loopback or on one of our links (routes.py), where
    round trips are short, loss is rare and qh3's CPU per packet (a fifth of aioquic's)
    bounds the rate; bbr toward a routed peer, where random loss would cut a loss-based
    controller to a fraction of the link (RFC 9002 7 reads every loss as congestion)."""
    cc = cc or DEFAULT_CC
    if cc != "auto":
        return cc
    host = peer[0] if isinstance(peer, tuple) and peer else None
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return "bbr"
    # ::ffff:127.0.0.1 is loopback to IPv4, which ipaddress's IPv6 view does not say.
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return "cubic" if ip.is_loopback or ip.is_link_local or on_link(ip) else "bbr"


def new_engine(cc: str | None = None, *, peer: object = None, **kwargs: Any) -> Any:
    """An engine for controller ``cc`` (None: the default) toward ``peer``, built with
    qh3's QuicConnection arguments; both kinds take a qh3 QuicConfiguration and give
    qh3's events."""
    cc = controller_for(cc, peer)
    if cc == "bbr":
        # Imported only when asked for: aioquic is loaded by those who use it.
        from quicfs.transport.quic.engine_aioquic import AioquicEngine

        return AioquicEngine(cc="quicfs-bbr", **kwargs)
    if cc != "cubic":
        raise ValueError(f"unknown congestion controller {cc!r}")
    return Engine(**kwargs)


__all__ = ["CONTROLLERS", "DEFAULT_CC", "Engine", "HandshakeFacts", "controller_for",
           "new_engine", "verify_server_chain"]
