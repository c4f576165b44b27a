"""The QUIC engine on aioquic: the interface of :class:`quicfs.transport.quic.engine.Engine`
(qh3) over aioquic's ``QuicConnection``, so :class:`~quicfs.transport.quic.driver.QuicDriver`
drives either unchanged. aioquic takes a congestion controller of ours (issue 21 item 2):
by default our BBR (:mod:`quicfs.transport.aioquic_cc`) with its pacer. Every reach into
aioquic's internals is here, and nowhere else but ``aioquic_cc.attach_pacer`` (the pacer).

The edges speak qh3: the configuration comes in as qh3's, events go out as qh3's
classes, session tickets come and go as ``qh3.tls.SessionTicket`` (the ticket store
unpickles only qh3 classes) and the peer's certificate as qh3's ``X509Certificate``.

What aioquic lacks, and how it is made up here:

- A certificate pin (qh3's ``assert_fingerprint``): checked when the server's
  CertificateVerify has been read, before the client's Finished, so no application data
  goes to a server whose pin failed. The failure is TLS alert bad_certificate (CRYPTO_ERROR
  0x100 + 42, RFC 9001 4.8) with qh3's words, "Fingerprints did not match".
- Flow control sized by what the application took (RFC 9000 4.1, 4.2): aioquic doubles a
  window each time half of it has been received, so the credit ahead of a reader grows
  with the bytes received and :attr:`hold` could not bound memory. Here each window
  slides: the peer may send ``max_stream_data`` (``max_data`` on the connection) beyond
  what was received, and while :attr:`hold` is set no credit is raised at all.
- :meth:`receive` counts packets that decrypted and were not seen before: only such a
  packet may move a connection to a new address (RFC 9000 9.3).
- The driver's PINGs go alone, at once, past the congestion window and the pacer: they
  validate a client's new address (peer_path.py), and a full packet could not go there.
- App-limited: BBR must know when the sender had nothing to send though its window had
  room (draft-ietf-ccwg-bbr "app-limited"); :meth:`datagrams_to_send` tells it.
- A client never sends 0-RTT (see engine.py): its ticket is offered as one that allows
  no early data (RFC 8446 4.2.10).

qh3's private key objects do not export their key, and aioquic signs with a
``cryptography`` key: engine_aioquic_edges.py lends qh3's key to aioquic behind
``cryptography``'s interface (it only ever calls ``sign``), and turns qh3's configuration
and tickets into aioquic's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import qh3.tls
from aioquic import tls
from aioquic.quic.connection import (
    CONNECTION_LIMIT_FRAME_CAPACITY,
    END_STATES,
    MAX_STREAM_DATA_FRAME_CAPACITY,
    Limit,
    QuicConnection,
    QuicConnectionState,
)
from aioquic.quic.packet import QuicFrameType, QuicPacketType
from aioquic.quic.packet_builder import QuicPacketBuilder
from cryptography.hazmat.primitives.serialization import Encoding
from qh3.quic import events as qh3_events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnectionError
from qh3.quic.packet import QuicErrorCode

from quicfs.transport import aioquic_cc
from quicfs.transport.quic.engine_aioquic_edges import (
    aioquic_configuration,
    check_pin,
    to_aioquic_ticket,
    to_qh3_ticket,
)

#: aioquic's core states in which the connection is still open.
_OPEN_STATES = (QuicConnectionState.FIRSTFLIGHT, QuicConnectionState.CONNECTED)


class AioquicEngine(QuicConnection):
    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        cc: str = aioquic_cc.NAME,
        max_streams: tuple[int, int] | None = None,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
        session_ticket_fetcher: Callable[[bytes], Any] | None = None,
        session_ticket_handler: Callable[[Any], None] | None = None,
    ) -> None:
        fetcher = handler = None
        if session_ticket_fetcher is not None:
            def fetcher(label: bytes) -> tls.SessionTicket | None:
                ticket = session_ticket_fetcher(label)
                return None if ticket is None else to_aioquic_ticket(ticket)
        if session_ticket_handler is not None:
            def handler(ticket: tls.SessionTicket) -> None:
                session_ticket_handler(to_qh3_ticket(ticket))
        super().__init__(
            configuration=aioquic_configuration(configuration, cc),
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
            session_ticket_fetcher=fetcher,
            session_ticket_handler=handler,
        )
        self._pin = configuration.assert_fingerprint
        # The windows slide by these (module docstring); aioquic starts at them too.
        self._max_data_window = self._configuration.max_data
        self._max_stream_data_window = self._configuration.max_stream_data
        if max_streams is not None:
            # What a server advertises (initial_max_streams_bidi, _uni, RFC 9000 18.2):
            # SMB over QUIC needs one bidirectional stream (MS-SMB2 2.1).
            bidi, uni = max_streams
            self._local_max_streams_bidi = Limit(
                QuicFrameType.MAX_STREAMS_BIDI, "max_streams_bidi", bidi)
            self._local_max_streams_uni = Limit(
                QuicFrameType.MAX_STREAMS_UNI, "max_streams_uni", uni)
        #: While True (and the connection open), events stay queued and the peer gets
        #: no new flow-control credit.
        self.hold = False
        #: Events queued while held (as :meth:`receive` saw them).
        self.held_events = 0
        self._fresh = 0
        self._authenticated = False
        self.lost_packets = 0
        self._count_losses()
        if cc == aioquic_cc.NAME:
            aioquic_cc.attach_pacer(self)

    # -- receiving
    def receive(self, datagrams: list[bytes], addr: Any, now: float) -> int:
        """Feed datagrams that came from ``addr``; the number of packets in them that the
        engine authenticated and had not received before."""
        queued = len(self._events)
        self._fresh = 0
        for data in datagrams:
            self.receive_datagram(data, addr, now)
        if self.hold:
            # Each frame that makes an event costs memory while held: the driver bounds
            # their count.
            self.held_events += max(0, len(self._events) - queued)
        return self._fresh

    def receive_gro_buffer(self, data: bytes, segment_size: int, addr: Any,
                           now: float) -> int:
        """A GRO super-buffer: datagrams of ``segment_size`` bytes, the last maybe shorter."""
        if segment_size <= 0:
            raise ValueError("segment_size must be positive")
        return self.receive([data[i:i + segment_size]
                             for i in range(0, len(data), segment_size)], addr, now)

    def _payload_received(self, context: Any, plain: bytes, **kwargs: Any) -> Any:
        # aioquic reaches this only for a packet that decrypted and is not a duplicate
        # (RFC 9000 12.3).
        self._fresh += 1
        self._authenticated = True
        return super()._payload_received(context, plain, **kwargs)

    # The properties below mean what they mean on engine.py's Engine.
    @property
    def authenticated(self) -> bool:
        # A client's Retry counts: aioquic acts on one only if its integrity tag binds it
        # to our first Initial (RFC 9001 5.8), so the server is there. A gateway retries
        # an aioquic client, which pads its first datagram after the Initial
        # (quic/server.py): without this, a path that fails after the Retry would not
        # let a resumed handshake fall back to a full one (quic/client.py open_quic).
        return self._authenticated or (self._is_client and self._retry_count > 0)

    @property
    def confirmed(self) -> bool:
        return bool(self._handshake_confirmed)  # RFC 9001 4.1.2

    @property
    def closing_error(self) -> int | None:
        event = self._close_event
        return None if event is None else int(event.error_code)

    @property
    def is_open(self) -> bool:
        return self._state in _OPEN_STATES and self._close_event is None

    # -- events
    def next_event(self) -> Any:
        """The next event as qh3's class; None while held (and open), or when none."""
        while not (self.hold and self.is_open):
            event = super().next_event()
            if event is None:
                return None
            kind = getattr(qh3_events, type(event).__name__, None)
            if kind is not None:
                return kind(**{f.name: getattr(event, f.name)
                               for f in dataclasses.fields(event)})
        return None

    def release(self) -> None:
        """End :attr:`hold`: events go out, and credit with the next datagrams."""
        self.hold = False
        self.held_events = 0

    # -- timers: aioquic compares with its idle deadline, unset until it has a peer
    def get_timer(self) -> float | None:
        if self._close_at is None:
            return None
        return super().get_timer()

    def handle_timer(self, now: float) -> None:
        if self._close_at is not None:
            super().handle_timer(now)

    # -- sending
    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        # As qh3 does: a closed connection or a finished stream is a QuicConnectionError.
        if self._state in END_STATES or self._close_event is not None:
            raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None,
                                      "the connection is closed")
        try:
            super().send_stream_data(stream_id, data, end_stream)
        except (RuntimeError, ValueError) as exc:
            raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc

    def get_send_buffer_size(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` and not yet sent once (as qh3 counts them)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return max(0, sender._buffer_stop - sender.highest_offset)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        datagrams = self._pings_alone(now) + super().datagrams_to_send(now)
        cc = self._loss._cc
        if isinstance(cc, aioquic_cc.BbrCongestionControl) and self._handshake_complete \
                and self._loss.bytes_in_flight < self._loss.congestion_window \
                and not self._has_sendable():
            cc.set_app_limited()
        return datagrams

    def _pings_alone(self, now: float) -> list[tuple[bytes, Any]]:
        """The PINGs asked for (:meth:`send_ping`), in a packet of their own, now.

        The driver's PINGs validate a client's new address in place of PATH_CHALLENGE
        (peer_path.py; RFC 9000 8.2, 9.3). Like a probe (RFC 9002 7.5), such a packet must
        wait for no congestion window and no pacer, and it must be small: a client
        behind a rebinding NAT sends nothing but ACKs, and an unvalidated address may
        get three times what came from it (RFC 9000 8.1). aioquic would put the PING in
        its next packet, once the window has room, behind a full load of stream data:
        the driver could never send it, and the connection stalled."""
        if not self._ping_pending or not self._handshake_complete \
                or self._state != QuicConnectionState.CONNECTED or self._close_pending:
            return []
        crypto = self._cryptos[tls.Epoch.ONE_RTT]
        if not crypto.send.is_valid():
            return []
        builder = QuicPacketBuilder(
            host_cid=self.host_cid, is_client=self._is_client,
            max_datagram_size=self._max_datagram_size, packet_number=self._packet_number,
            peer_cid=self._peer_cid.cid, quic_logger=self._quic_logger,
            spin_bit=self._spin_bit, version=self._version)
        builder.start_packet(QuicPacketType.ONE_RTT, crypto)
        self._write_ping_frame(builder, self._ping_pending)
        self._ping_pending.clear()
        return self._flush_builder(builder=builder, network_path=self._network_paths[0],
                                   peer_cid=self._peer_cid.cid, now=now)

    def _has_sendable(self) -> bool:
        """A stream holds data (or a FIN) that flow control lets out now."""
        room = self._remote_max_data - self._remote_max_data_used
        for stream in self._streams.values():
            sender = stream.sender
            if stream.is_blocked or sender.reset_pending:
                continue
            if sender._pending_eof:
                return True
            if len(sender._pending):
                limit = min(stream.max_stream_data_remote, sender.highest_offset + room)
                if sender._pending[0].start < limit:
                    return True
        return False

    # -- flow control: sliding windows, frozen while held (module docstring)
    def _slide(self, credit: int, received: int, window: int) -> int:
        """The credit to give the peer: ``window`` beyond what was received once less
        than half of it is left; unchanged while held."""
        if not self.hold and credit - received < window // 2:
            return received + window
        return credit

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        limit = self._local_max_data
        limit.value = self._slide(limit.value, limit.used, self._max_data_window)
        for limit in (self._local_max_data, self._local_max_streams_bidi,
                      self._local_max_streams_uni):
            if limit is not self._local_max_data and \
                    limit.sent - limit.used >= limit.value - limit.sent:
                continue  # batch MAX_STREAMS, as aioquic does
            if limit.value != limit.sent:
                buf = builder.start_frame(limit.frame_type,
                                          capacity=CONNECTION_LIMIT_FRAME_CAPACITY,
                                          handler=self._on_connection_limit_delivery,
                                          handler_args=(limit,))
                buf.push_uint_var(limit.value)
                limit.sent = limit.value

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        if not stream.max_stream_data_local:
            return  # a stream we only send on
        stream.max_stream_data_local = self._slide(
            stream.max_stream_data_local, stream.receiver.highest_offset,
            self._max_stream_data_window)
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(QuicFrameType.MAX_STREAM_DATA,
                                      capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                                      handler=self._on_max_stream_data_delivery,
                                      handler_args=(stream,))
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    # -- the certificate pin
    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if self._is_client and self._pin is not None:
            context = self.tls
            verify = context._client_handle_certificate_verify

            def verify_and_pin(input_buf: Any) -> None:
                verify(input_buf)  # the server holds the certificate's key
                check_pin(self._pin, context._peer_certificate)

            context._client_handle_certificate_verify = verify_and_pin

    def get_peercert(self) -> Any:
        """The peer's certificate as qh3 gives it (``public_bytes()`` is DER), or None."""
        context = getattr(self, "tls", None)
        cert = None if context is None else context._peer_certificate
        if cert is None:
            return None
        return qh3.tls.X509Certificate(cert.public_bytes(Encoding.DER))

    # -- the path's figures
    def figure(self, name: str) -> float | None:
        """``smoothed_rtt``, ``congestion_window``, ``bytes_in_flight`` or ``loss_total``;
        None while unknown (no RTT sample yet)."""
        loss = self._loss
        if name == "smoothed_rtt":
            return float(loss._rtt_smoothed) if loss._rtt_initialized else None
        if name == "congestion_window":
            return float(loss.congestion_window)
        if name == "bytes_in_flight":
            return float(loss.bytes_in_flight)
        if name == "loss_total":
            return float(self.lost_packets)
        return None

    def _count_losses(self) -> None:
        loss = self._loss
        on_lost = loss._on_packets_lost

        def counted(*, packets: Any, congestion_event: bool = True, **kwargs: Any) -> None:
            packets = list(packets)
            if congestion_event:  # not a PTO's resend of data that may not be lost
                self.lost_packets += len(packets)
            on_lost(packets=packets, congestion_event=congestion_event, **kwargs)

        loss._on_packets_lost = counted


__all__ = ["AioquicEngine"]
