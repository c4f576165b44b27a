"""Our BBR controller (:mod:`quicfs.transport.bbr`) plugged into aioquic.

aioquic picks a controller by name (``QuicConfiguration.congestion_control_algorithm``)
from those registered with ``register_congestion_control``; importing this module
registers ours as ``"quicfs-bbr"``. aioquic's recovery calls the controller per packet
sent, acknowledged, lost or discarded (``QuicPacketRecovery`` in aioquic/quic/recovery.py)
and reads ``congestion_window`` and ``bytes_in_flight`` back.

Pacing: aioquic's ``QuicPacketPacer`` paces at congestion_window / smoothed_rtt, which for
BBR (cwnd = 2 x BDP) is twice the bottleneck rate, so a queue of about one BDP would stand
at the bottleneck. :func:`attach_pacer` swaps in a pacer that follows BBR's own
``pacing_rate`` (draft-ietf-ccwg-bbr "Pacing Rate"). aioquic exposes no public hook for
the pacer, so this one function reaches into ``QuicConnection._loss._pacer``; it checks
the attribute is there and says so when an aioquic release moves it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from aioquic.quic.congestion.base import QuicCongestionControl, register_congestion_control
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.quic.recovery import K_MICRO_SECOND, K_SECOND, QuicPacketPacer

from quicfs.transport.bbr import Bbr, SentRecord

NAME = "quicfs-bbr"


class BbrCongestionControl(QuicCongestionControl):
    """aioquic's controller interface over one :class:`~quicfs.transport.bbr.Bbr`.

    aioquic reports acknowledged packets one by one; BBR takes one rate sample per ACK.
    The packets acknowledged at one instant are gathered and handed over together when
    anything next reads or changes the model (a window, the pacing rate, a send, a
    loss), so the model runs once per ACK instead of once per packet: a sixth of a
    sender's CPU was BBR's per-packet update.
    """

    def __init__(self, *, max_datagram_size: int, rng: random.Random | None = None) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._mss = max_datagram_size
        self._rng = rng  # for reproducible runs; None: a fresh random.Random
        # aioquic gives no clock here; the controller starts at the first send.
        self.bbr: Bbr | None = None
        # Our per-packet record, by packet object: aioquic keeps the packet alive until
        # it reports it acked, lost or expired, which is when we drop the record.
        self._records: dict[int, SentRecord] = {}
        self._acked: list[SentRecord] = []  # acknowledged at _acked_at, not yet told
        self._acked_at = 0.0

    def _model(self) -> Bbr | None:
        """The controller with every acknowledgement so far applied."""
        if self._acked:
            acked, self._acked = self._acked, []
            assert self.bbr is not None
            self.bbr.on_acks(self._acked_at, acked)
        return self.bbr

    @property  # type: ignore[override]
    def congestion_window(self) -> int:
        bbr = self._model()
        return self._initial_window if bbr is None else bbr.cwnd

    @congestion_window.setter
    def congestion_window(self, value: int) -> None:
        self._initial_window = value  # aioquic's, until the first packet starts BBR

    @property  # type: ignore[override]
    def bytes_in_flight(self) -> int:
        bbr = self._model()
        return 0 if bbr is None else bbr.bytes_in_flight

    @property
    def pacing_rate(self) -> float | None:
        """Bytes per second, or None before the first packet."""
        bbr = self._model()
        return None if bbr is None else bbr.pacing_rate

    @property
    def send_quantum(self) -> float | None:
        """Bytes per burst (draft "BBRSetSendQuantum"), or None before the first packet."""
        bbr = self._model()
        return None if bbr is None else bbr.send_quantum

    def set_app_limited(self) -> None:
        """The application has nothing to send though cwnd has room: aioquic cannot
        tell, so the driver that feeds the connection says so (draft "app-limited")."""
        bbr = self._model()
        if bbr is not None:
            bbr.set_app_limited()

    def on_packet_sent(self, *, packet: QuicSentPacket) -> None:
        now = packet.sent_time or 0.0
        bbr = self._model()
        if bbr is None:
            bbr = self.bbr = Bbr(mss=self._mss, now=now, rng=self._rng)
        self._records[id(packet)] = bbr.on_send(now, packet.sent_bytes)

    def on_packet_acked(self, *, now: float, packet: QuicSentPacket) -> None:
        record = self._records.pop(id(packet), None)
        if record is None or self.bbr is None:
            return
        if self._acked and now != self._acked_at:
            self._model()  # another ACK's packets: those before are one ACK
        self._acked.append(record)
        self._acked_at = now

    def on_packets_lost(self, *, now: float, packets: Iterable[QuicSentPacket]) -> None:
        bbr = self._model()
        for packet in packets:
            record = self._records.pop(id(packet), None)
            if record is not None and bbr is not None:
                bbr.on_lost(now, record)

    def on_packets_expired(self, *, packets: Iterable[QuicSentPacket]) -> None:
        bbr = self._model()
        for packet in packets:
            record = self._records.pop(id(packet), None)
            if record is not None and bbr is not None:
                bbr.on_discard(record)

    def on_persistent_congestion(self) -> None:
        bbr = self._model()
        if bbr is not None:
            bbr.on_persistent_congestion()

    def on_rtt_measurement(self, *, now: float, rtt: float) -> None:
        # BBR takes its RTT samples from the acknowledged packets, in on_packet_acked.
        pass

    def get_log_data(self) -> dict:
        data = super().get_log_data()
        if self.bbr is not None:
            data["bbr_state"] = self.bbr.state.value
            data["bbr_bw"] = self.bbr.bw
        return data


class BbrPacer(QuicPacketPacer):
    """aioquic's token-bucket pacer at the rate BBR asks for instead of cwnd / srtt, and
    one that keeps its debt.

    aioquic's own pacer sends a packet whenever its bucket holds any credit at all and
    then empties it, so each wake-up of the connection (every ack that arrives) lets one
    packet out however short the credit: measured on the simulated link, 1800 packets/s
    left a sender paced at 720. Here a packet costs its full interval, the bucket may go
    into debt, and the next send waits until the debt is paid.

    A sender that waits for its turn wakes late: a trio sleep on epoll lasts at least a
    millisecond (measured here: 0.1 ms asked, 1.2 ms median, 2.4 ms p90). Credit capped
    at one burst would lose the rest of the lateness, the sender would fall below
    pacing_rate, BBR would take that for the path's rate and pace lower still -- on
    loopback, down to a few MB/s. So the credit a late wake-up accrued is kept, up to
    ``MAX_LATENESS``; only an idle sender's credit is capped at one burst.
    """

    MAX_LATENESS = 0.005  # seconds of sending a late wake-up may catch up on

    def __init__(self, *, cc: BbrCongestionControl, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._cc = cc
        self._due: float | None = None  # when the send we wait for is due

    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        rate = self._cc.pacing_rate
        if rate is None or rate <= 0:
            super().update_rate(congestion_window, smoothed_rtt)
            return
        mss = self._max_datagram_size
        self.packet_time = max(K_MICRO_SECOND, min(mss / rate, K_SECOND))
        # An idle sender may burst one send quantum (draft "BBRSetSendQuantum": 1 ms at
        # the pacing rate, 2 packets to 64 KB). aioquic's 2 to 16 datagrams, at most a
        # quarter cwnd, would cap a sender that wakes once a millisecond at 16 packets
        # a millisecond, or a quarter cwnd, whatever the path.
        burst = self._cc.send_quantum or 2 * mss
        self.bucket_max = burst / rate
        if self._due is None:
            self.bucket_time = min(self.bucket_time, self.bucket_max)

    def update_bucket(self, now: float) -> None:
        if now <= self.evaluation_time:
            return
        cap = self.bucket_max
        if self._due is not None and now > self._due:
            cap += min(now - self._due, self.MAX_LATENESS)  # class docstring
        # Growth stops at the cap; credit already there stays until spent.
        grown = self.bucket_time + (now - self.evaluation_time)
        self.bucket_time = min(grown, max(cap, self.bucket_time))
        self.evaluation_time = now

    def next_send_time(self, now: float) -> float | None:
        if self.packet_time is None:
            return None
        self.update_bucket(now=now)
        # A debt under a microsecond is paid: a wake-up that float rounding put a hair
        # early must still send, or the connection would spin on a timer that is "now".
        if self.bucket_time < -K_MICRO_SECOND:
            self._due = now - self.bucket_time
            return self._due
        self._due = None
        return None

    def update_after_send(self, now: float) -> None:
        if self.packet_time is not None:
            self.update_bucket(now=now)
            self.bucket_time -= self.packet_time


def attach_pacer(connection: QuicConnection) -> None:
    """Make ``connection`` pace at BBR's rate; it must use ``"quicfs-bbr"``.

    Raises RuntimeError when aioquic's internals are not what this was written against.
    """
    loss = getattr(connection, "_loss", None)
    cc = getattr(loss, "_cc", None)
    pacer = getattr(loss, "_pacer", None)
    if not isinstance(cc, BbrCongestionControl) or not isinstance(pacer, QuicPacketPacer):
        raise RuntimeError(
            "cannot attach the BBR pacer: the connection does not use "
            f"congestion_control_algorithm={NAME!r} or this aioquic keeps its pacer elsewhere"
        )
    loss._pacer = BbrPacer(cc=cc, max_datagram_size=pacer._max_datagram_size)


register_congestion_control(NAME, BbrCongestionControl)
