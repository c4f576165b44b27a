"""A BBR congestion controller (BBRv3 family), sans-I/O: every input carries ``now``.

Theory of operation
-------------------
BBR (Cardwell et al. 2016, "BBR: Congestion-Based Congestion Control"; IETF CCWG
draft-ietf-ccwg-bbr, which specifies BBRv3) does not read a random loss as congestion.
It keeps a model of the path -- the bottleneck bandwidth ``max_bw`` (a windowed maximum
of delivery-rate samples) and the round-trip propagation time ``min_rtt`` (a windowed
minimum of RTT samples) -- and from it derives two controls:

* ``pacing_rate`` = pacing_gain x bw: how fast to send;
* ``cwnd`` = cwnd_gain x BDP (+ a small quantization budget): how much may be in flight.

A loss bounds the model only when the loss *rate* of a round of probing exceeds
``LOSS_THRESH`` (2 %), draft section "Probing for Bandwidth: inflight_hi" ("BBRLossThresh"):
random loss below that costs the packets lost, not the rate.

Where we depart from the draft (each for random-loss tolerance, each tested): a round's
loss rate must exceed the threshold by two binomial standard deviations before it counts,
unless the round's RTT samples all carried a standing queue (then the buffer is
overflowing and any loss is congestion, as the draft reads every loss outside probing);
and the short-term bounds bw_lo/inflight_lo are cut only on such congestive rounds, not
on every round with a loss. Without the first, 2 % random loss left 58 % of the link;
without the second clause, a flow joining a busy link kept 23 % of it.

The state machine is the draft's "State Machine": Startup, Drain, ProbeBW (its phases
Down, Cruise, Refill, Up) and ProbeRTT.

The transport calls :meth:`Bbr.on_send` for each packet counted in flight and keeps the
:class:`SentRecord` it returns beside the packet; it hands the record back to
:meth:`Bbr.on_acks` (all that one ACK acknowledged), :meth:`Bbr.on_lost` or
:meth:`Bbr.on_discard`. It reads ``cwnd`` and
``pacing_rate`` (bytes per second) after each call. Sizes are in bytes, times in seconds.

ACK aggregation (draft "BBR.extra_acked", "BBRUpdateACKAggregation"): a receiver that
acks in bursts -- a busy Python peer acks what one pass of its loop read, aioquic after
its 1 ms ack timer, GRO hands over dozens of datagrams at once -- leaves the sender
silent between bursts. On a path whose round trip is shorter than that silence, a cwnd
of 2 x BDP empties long before the next ack and the delivery rate collapses with it
(loopback: 7.6 MB/s, cwnd at its 4-packet floor). The excess acked beyond bw x elapsed
is tracked, and its windowed maximum is added to cwnd; the draft's quantization budget
(3 send quanta of 1 ms at the pacing rate, "BBRQuantizationBudget") keeps a few ms of
data in flight as well. RTT samples keep the peer's ack delay, as RFC 9002 5.2's
min_rtt does: the newest packet of each ack burst waited least, so the min filter still
finds the path's own RTT (0.2 ms on loopback), with no floor.

Simplifications, each harmless for the transports we drive: "an ACK" is what the
transport hands over together (aioquic_cc.py: the packets acknowledged at one instant,
the ACK frames of one datagram); loss-recovery cwnd modulation is not modelled; the
sender is app-limited only when the transport says so (:meth:`Bbr.set_app_limited`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import Enum

# Draft section "Parameters" (names as there).
STARTUP_PACING_GAIN = 4 * math.log(2)  # 2.77: doubles the sending rate each round
STARTUP_CWND_GAIN = 2.0
DRAIN_PACING_GAIN = 0.35  # BBRv3 drains the Startup queue in about one round
DEFAULT_CWND_GAIN = 2.0
PROBE_UP_CWND_GAIN = 2.25
PROBE_DOWN_PACING_GAIN = 0.90
PROBE_UP_PACING_GAIN = 1.25
PACING_MARGIN = 0.01  # pace 1 % below bw, so the bottleneck queue stays near empty
LOSS_THRESH = 0.02  # BBRLossThresh
BETA = 0.7  # BBRBeta: the multiplicative decrease per lossy round
HEADROOM = 0.15  # BBRHeadroom: inflight_hi share left free for other flows in Cruise
MIN_PIPE_CWND_PACKETS = 4
EXTRA_ACKED_FILTER_LEN = 10  # BBRExtraAckedFilterLen, in rounds
SEND_QUANTUM_TIME = 0.001  # BBRSetSendQuantum: 1 ms at the pacing rate ...
MAX_SEND_QUANTUM = 64 * 1024  # ... at most 64 KB
QUEUE_RTT_FACTOR = 1.5  # ours: a round whose every RTT exceeds this x min_rtt had a queue
FULL_BW_THRESH = 1.25  # Startup: bw must grow 25 % per round ...
FULL_BW_COUNT = 3  # ... or Startup ends after 3 rounds without
STARTUP_FULL_LOSS_COUNT = 6  # loss events in a round that can end Startup
PROBE_RTT_CWND_GAIN = 0.5
PROBE_RTT_DURATION = 0.200  # seconds
PROBE_RTT_INTERVAL = 5.0  # seconds: min_rtt is re-probed this often at most
MIN_RTT_FILTER_LEN = 10.0  # seconds
PROBE_WAIT_BASE = 2.0  # seconds between bw probes: 2 s + a random 0..1 s
MAX_RENO_ROUNDS = 63  # bw probes no rarer than Reno would reach the same BDP
INITIAL_CWND_PACKETS = 10


class State(Enum):
    STARTUP = "startup"
    DRAIN = "drain"
    PROBE_BW_DOWN = "probe_bw_down"
    PROBE_BW_CRUISE = "probe_bw_cruise"
    PROBE_BW_REFILL = "probe_bw_refill"
    PROBE_BW_UP = "probe_bw_up"
    PROBE_RTT = "probe_rtt"


# A tuple, not a set: membership by identity, without Enum's Python-level __hash__
# (this runs on every ack).
_PROBE_BW = (State.PROBE_BW_DOWN, State.PROBE_BW_CRUISE, State.PROBE_BW_REFILL, State.PROBE_BW_UP)


class SentRecord:
    """What the draft's "Delivery Rate Estimation" keeps per packet at send time."""

    __slots__ = (
        "delivered",
        "delivered_time",
        "first_send_time",
        "is_app_limited",
        "lost",
        "send_time",
        "size",
        "tx_in_flight",
    )

    def __init__(
        self,
        send_time: float,
        size: int,
        delivered: int,
        delivered_time: float,
        first_send_time: float,
        is_app_limited: bool,
        tx_in_flight: int,
        lost: int,
    ) -> None:
        self.send_time = send_time
        self.size = size
        self.delivered = delivered
        self.delivered_time = delivered_time
        self.first_send_time = first_send_time
        self.is_app_limited = is_app_limited
        self.tx_in_flight = tx_in_flight
        self.lost = lost


class Bbr:
    """One connection's controller. Read ``cwnd`` and ``pacing_rate`` after each call."""

    def __init__(self, *, mss: int, now: float, rng: random.Random | None = None) -> None:
        self.mss = mss
        self._rng = rng if rng is not None else random.Random()
        self.bytes_in_flight = 0
        self.cwnd = INITIAL_CWND_PACKETS * mss
        # Delivery-rate estimation state (the draft's C.delivered and friends).
        self.delivered = 0
        self.lost = 0
        self._delivered_time = now
        self._first_send_time = now
        self._app_limited_until = 0  # C.app_limited: a delivered count, 0 = not limited
        # Model.
        self.bw = self.max_bw = 0.0
        self._bw_slots = [0.0, 0.0]  # max filter over the current and previous cycle
        self.min_rtt, self._min_rtt_stamp = math.inf, now
        self.probe_rtt_min_delay, self.probe_rtt_min_stamp = math.inf, now
        # Bounds from loss (draft "BBR.inflight_hi", "BBR.bw_lo", "BBR.inflight_lo").
        self.inflight_hi = self.bw_lo = self.inflight_lo = math.inf
        self._bw_latest = 0.0
        self._inflight_latest = 0
        # ACK aggregation (draft "BBR.extra_acked"): the current epoch and a max filter
        # of two slots, each half the filter's length in rounds.
        self.extra_acked = 0
        self._extra_acked_slots = [0, 0]
        self._extra_acked_rounds = 0
        self._ack_epoch_start = now
        self._ack_epoch_acked = 0
        # Rounds (draft "Round counting").
        self.round_count = 0
        self._next_round_delivered = 0
        self._round_start = False
        self._reset_round_signals()
        # Startup's full-pipe detection.
        self.full_bw_reached = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        # ProbeBW bookkeeping.
        self._cycle_stamp = now
        self._bw_probe_wait = PROBE_WAIT_BASE
        self._rounds_since_bw_probe = 0
        self._bw_probe_samples = False
        self._probe_up_cnt = math.inf
        self._probe_up_acks = 0
        self._probe_up_rounds = 0
        self._cwnd_limited = False
        # ProbeRTT bookkeeping.
        self._probe_rtt_done_stamp = 0.0
        self._probe_rtt_round_done = False
        self._prior_cwnd = 0
        self._probe_rtt_expired = False
        # Controls.
        self.state = State.STARTUP
        self.pacing_gain = STARTUP_PACING_GAIN
        self.cwnd_gain = STARTUP_CWND_GAIN
        # Draft "Pacing Rate" initialization: the initial window per RTT, times the
        # Startup gain; with no RTT sample yet, a nominal 10 ms RTT is assumed.
        self.pacing_rate = STARTUP_PACING_GAIN * self.cwnd / 0.010
        self._up_rounds = 0
        self._up_bw_base = 0.0

    # -- transport events ------------------------------------------------------------

    def set_app_limited(self) -> None:
        """The sender has nothing to send while cwnd allows more (draft "app-limited")."""
        self._app_limited_until = max(self.delivered + self.bytes_in_flight, 1)

    def on_send(self, now: float, size: int) -> SentRecord:
        """Count a packet in flight; keep the returned record until it is acked or lost."""
        if self.bytes_in_flight == 0:
            # Restart from idle: the send clock starts again, so the idle gap is not
            # counted as if data had trickled out during it.
            self._first_send_time = now
            self._delivered_time = now
        self.bytes_in_flight += size
        self._cwnd_limited = self.bytes_in_flight + self.mss > self.cwnd
        return SentRecord(
            now,
            size,
            self.delivered,
            self._delivered_time,
            self._first_send_time,
            self._app_limited_until != 0,
            self.bytes_in_flight,
            self.lost,
        )

    def on_discard(self, record: SentRecord) -> None:
        """A packet leaves flight without news of delivery (its packet space is gone)."""
        self.bytes_in_flight = max(self.bytes_in_flight - record.size, 0)

    def on_ack(self, now: float, record: SentRecord) -> None:
        """One packet was acknowledged."""
        self.on_acks(now, (record,))

    def on_acks(self, now: float, records: Sequence[SentRecord]) -> None:
        """The packets one ACK acknowledged: one rate sample, from the packet sent last,
        and one run of the model (draft "BBRUpdateOnACK"; "Delivery Rate Samples" takes
        rs.prior_delivered from the most recently sent packet acked)."""
        acked = 0
        record = records[0]
        for each in records:
            acked += each.size
            if each.delivered > record.delivered or (
                each.delivered == record.delivered and each.send_time > record.send_time
            ):
                record = each
        self.bytes_in_flight = max(self.bytes_in_flight - acked, 0)
        self.delivered += acked
        self._delivered_time = now
        self._delivered_in_round += acked
        if self._app_limited_until and self.delivered > self._app_limited_until:
            self._app_limited_until = 0
        # Draft "Delivery Rate Samples": the rate over the longer of the send and ack
        # intervals that this packet closes, so ack compression cannot inflate it.
        self._first_send_time = record.send_time
        send_elapsed = record.send_time - record.first_send_time
        ack_elapsed = now - record.delivered_time
        interval = max(send_elapsed, ack_elapsed)
        sample_delivered = self.delivered - record.delivered
        rtt = now - record.send_time
        # A sample over less than min_rtt is discarded: it would measure a burst of
        # acks, not the path.
        valid = interval > 0 and (interval >= self.min_rtt or not math.isfinite(self.min_rtt))
        rate = sample_delivered / interval if valid else 0.0
        lost_since = self.lost - record.lost

        self._round_min_rtt = min(self._round_min_rtt, rtt)
        self._update_round(record)
        self._update_max_bw(rate, record.is_app_limited)
        self._bw_latest = max(self._bw_latest, rate)
        self._inflight_latest = max(self._inflight_latest, sample_delivered)
        if self._round_start:
            self._rounds_since_bw_probe += 1
        self._update_congestion_signals()
        if self._round_start:
            # Draft "BBRAdvanceLatestDeliverySignals": a new round's best starts here.
            self._bw_latest = rate
            self._inflight_latest = sample_delivered
        self._update_ack_aggregation(now, acked)
        self._adapt_upper_bounds(now, record, lost_since, acked)
        self._check_startup_done()
        self._check_drain(now)
        self._update_probe_bw_phase(now)
        self._update_min_rtt(now, rtt)
        self._check_probe_rtt(now)
        self._bound_bw()
        self._set_pacing_rate()
        self._set_cwnd(acked)

    def on_persistent_congestion(self) -> None:
        """Every packet of a PTO period was lost (RFC 9002 7.6): restart from a minimal
        window, keeping the model (draft "Handling Retransmission Timeouts")."""
        self._prior_cwnd = max(self._prior_cwnd, self.cwnd)
        self.cwnd = MIN_PIPE_CWND_PACKETS * self.mss

    def on_lost(self, now: float, record: SentRecord) -> None:
        """A packet was declared lost (draft "BBRHandleLostPacket")."""
        self.bytes_in_flight = max(self.bytes_in_flight - record.size, 0)
        self.lost += record.size
        self._loss_in_round = True
        self._lost_in_round += record.size
        self._loss_events_in_round += 1
        if not self._bw_probe_samples:
            return
        lost_since = self.lost - record.lost
        if self._inflight_too_high(lost_since, record.tx_in_flight):
            # Estimate the in-flight volume at which the loss rate crossed the threshold.
            inflight_prev = record.tx_in_flight - record.size
            lost_prev = lost_since - record.size
            lost_prefix = (LOSS_THRESH * inflight_prev - lost_prev) / (1 - LOSS_THRESH)
            self._handle_inflight_too_high(now, inflight_prev + lost_prefix, record.is_app_limited)
        self._set_pacing_rate()
        self._set_cwnd(0)

    # -- model -----------------------------------------------------------------------

    def _update_ack_aggregation(self, now: float, acked: int) -> None:
        # Draft "BBRUpdateACKAggregation": the data acked in this epoch beyond what bw
        # would have delivered since it began. An ack stream at or below bw ends the
        # epoch. The excess, at most one cwnd, feeds a max filter of
        # BBRExtraAckedFilterLen rounds (one round during Startup, when bw still grows).
        expected = self.bw * (now - self._ack_epoch_start)
        if self._ack_epoch_acked <= expected:
            self._ack_epoch_acked = 0
            self._ack_epoch_start = now
            expected = 0.0
        self._ack_epoch_acked += acked
        extra = min(int(self._ack_epoch_acked - expected), self.cwnd)
        slots = self._extra_acked_slots
        if self._round_start:
            self._extra_acked_rounds += 1
            span = EXTRA_ACKED_FILTER_LEN // 2 if self.full_bw_reached else 1
            if self._extra_acked_rounds >= span:
                self._extra_acked_rounds = 0
                slots[0], slots[1] = slots[1], 0
        if extra > slots[1]:
            slots[1] = extra
        self.extra_acked = max(slots)

    def bdp(self, gain: float = 1.0) -> float:
        """gain x the bandwidth-delay product (draft "BBRBDPMultiple")."""
        if not math.isfinite(self.min_rtt):
            return INITIAL_CWND_PACKETS * self.mss
        return gain * self.bw * self.min_rtt

    def _inflight(self, gain: float) -> float:
        # Draft "BBRInflight": gain x BDP within the quantization budget.
        return self._quantization_budget(self.bdp(gain))

    def _max_inflight(self) -> float:
        # Draft "BBRUpdateMaxInflight": what cwnd aims at, cwnd_gain x BDP plus the
        # recent ACK aggregation, so the pipe stays full between ack bursts.
        return self._quantization_budget(self.bdp(self.cwnd_gain) + self.extra_acked)

    @property
    def send_quantum(self) -> float:
        """Bytes the sender may send in one burst (draft "BBRSetSendQuantum"): 1 ms at
        the pacing rate, at least 2 packets, at most 64 KB."""
        quantum = self.pacing_rate * SEND_QUANTUM_TIME
        return min(max(quantum, 2 * self.mss), MAX_SEND_QUANTUM)

    def _quantization_budget(self, inflight: float) -> float:
        # Draft "BBRQuantizationBudget": room for the batches the sender, the NICs and
        # the receiver work in -- 3 send quanta ("BBRUpdateOffloadBudget") -- and 2
        # packets more while probing up. Ours: plus 3 packets of slack on any path, as
        # before (a low-rate path's quanta are smaller than its sender's bursts).
        inflight = max(
            inflight + 3 * self.mss, 3 * self.send_quantum, MIN_PIPE_CWND_PACKETS * self.mss
        )
        if self.state is State.PROBE_BW_UP:
            inflight += 2 * self.mss
        return inflight

    def _update_round(self, record: SentRecord) -> None:
        # Draft "Round counting": a round ends when a packet sent after the round began
        # is acknowledged.
        self._round_start = record.delivered >= self._next_round_delivered
        if self._round_start:
            self._next_round_delivered = self.delivered
            self.round_count += 1

    def _update_max_bw(self, rate: float, app_limited: bool) -> None:
        # Draft "BBR.max_bw Max Filter": an app-limited sample lowers nothing and raises
        # the estimate only if it beats it (the path did at least that).
        if rate <= 0 or (app_limited and rate < self.max_bw):
            return
        if rate > self._bw_slots[1]:
            self._bw_slots[1] = rate
            self.max_bw = max(self._bw_slots)

    def _advance_max_bw_filter(self) -> None:
        # One slot per ProbeBW cycle: the filter spans about two cycles.
        self._bw_slots = [self._bw_slots[1], 0.0]
        self.max_bw = self._bw_slots[0]

    def _update_congestion_signals(self) -> None:
        # Draft "BBRAdaptLowerBoundsFromCongestion": once per round, a round with loss
        # cuts the short-term bounds bw_lo and inflight_lo by Beta, never below what
        # the round delivered -- outside bw probing only. Our deviation: the round's
        # loss counts as congestion only if it came with a standing queue (every RTT
        # sample above QUEUE_RTT_FACTOR x min_rtt: the queue is overflowing, as when
        # flows share the bottleneck) or its rate is too high (_loss_too_high); random
        # loss on an uncongested path must not cut the rate.
        if not self._round_start:
            return
        sent = self._delivered_in_round + self._lost_in_round
        congested = self._loss_in_round and (
            self._queue_standing() or self._loss_too_high(self._lost_in_round, sent)
        )
        probing = self.state in (State.STARTUP, State.PROBE_BW_UP, State.PROBE_BW_REFILL)
        if congested and not probing and math.isfinite(self.min_rtt):
            if not math.isfinite(self.bw_lo):
                self.bw_lo = self.max_bw
            if not math.isfinite(self.inflight_lo):
                self.inflight_lo = self.cwnd
            self.bw_lo = max(self._bw_latest, BETA * self.bw_lo)
            self.inflight_lo = max(self._inflight_latest, BETA * self.inflight_lo)
        self._startup_loss_check()
        self._reset_round_signals()

    def _reset_round_signals(self) -> None:
        # What one round saw: loss, delivery and the least RTT.
        self._loss_in_round = False
        self._lost_in_round = 0
        self._loss_events_in_round = 0
        self._delivered_in_round = 0
        self._round_min_rtt = math.inf

    def _startup_loss_check(self) -> None:
        # Draft "Exiting Startup Based on Packet Loss": a round with many loss events
        # and a loss rate over the threshold means the pipe (and queue) is full.
        if self.state is not State.STARTUP or self.full_bw_reached:
            return
        sent = self._delivered_in_round + self._lost_in_round
        if self._loss_events_in_round >= STARTUP_FULL_LOSS_COUNT and self._loss_too_high(
            self._lost_in_round, sent
        ):
            self.full_bw_reached = True
            self.inflight_hi = max(self.bdp(), float(self._inflight_latest))

    def _inflight_too_high(self, lost: int, tx_in_flight: int) -> bool:
        return tx_in_flight > 0 and self._loss_too_high(lost, tx_in_flight)

    def _loss_too_high(self, lost: int, sent: float) -> bool:
        # Draft "BBRIsInflightTooHigh": lost > BBRLossThresh x sent. Our deviation:
        # unless every RTT sample of the round so far carried a queue (loss then is
        # the queue overflowing: congestion), a margin of two standard deviations of
        # the loss count that random loss at exactly the threshold would give
        # (binomial), so a path with ~2 % random loss does not cut the model in every
        # other round on sampling noise alone.
        limit = LOSS_THRESH * sent
        if not self._queue_standing():
            limit += 2 * math.sqrt(LOSS_THRESH * sent * self.mss)
        return lost > limit

    def _queue_standing(self) -> bool:
        # Every RTT sample of the round so far carried a queue at the bottleneck.
        return self._round_min_rtt > QUEUE_RTT_FACTOR * self.min_rtt

    def _handle_inflight_too_high(self, now: float, tx_in_flight: float, app_limited: bool) -> None:
        # Draft "BBRHandleInflightTooHigh": the probe found the volume that overflows
        # the path; remember it (not below Beta x the target) and stop probing.
        self._bw_probe_samples = False
        if not app_limited:
            self.inflight_hi = max(tx_in_flight, BETA * self._inflight(self.cwnd_gain / 2))
        if self.state is State.PROBE_BW_UP:
            self._start_probe_bw_down(now)

    def _adapt_upper_bounds(
        self, now: float, record: SentRecord, lost_since: int, acked: int
    ) -> None:
        # Draft "BBRAdaptUpperBounds": while probing, an ack with an acceptable loss
        # rate since its packet was sent proves that volume fits; raise inflight_hi.
        if self._bw_probe_samples and self._inflight_too_high(lost_since, record.tx_in_flight):
            self._handle_inflight_too_high(now, record.tx_in_flight, record.is_app_limited)
            return
        if not math.isfinite(self.inflight_hi):
            return
        if record.tx_in_flight > self.inflight_hi:
            self.inflight_hi = record.tx_in_flight
        if self.state is State.PROBE_BW_UP:
            self._probe_inflight_hi_upward(acked)

    def _probe_inflight_hi_upward(self, acked: int) -> None:
        # Draft "ProbeBW_UP": grow inflight_hi exponentially per round while the flow
        # is actually using it (cwnd-limited).
        if not self._cwnd_limited or self.cwnd < self.inflight_hi:
            return
        self._probe_up_acks += acked
        if self._probe_up_acks >= self._probe_up_cnt:
            delta = self._probe_up_acks // self._probe_up_cnt
            self._probe_up_acks -= delta * self._probe_up_cnt
            self.inflight_hi += delta * self.mss
        if self._round_start:
            self._raise_inflight_hi_slope()

    def _raise_inflight_hi_slope(self) -> None:
        growth = self.mss << min(self._probe_up_rounds, 30)
        self._probe_up_rounds = min(self._probe_up_rounds + 1, 30)
        self._probe_up_cnt = max(self.cwnd // growth, 1)

    # -- state machine ---------------------------------------------------------------

    def _check_startup_done(self) -> None:
        # Draft "Exiting Startup Based on Bandwidth Plateau".
        if self.state is not State.STARTUP:
            return
        if not self.full_bw_reached and self._round_start and self._app_limited_until == 0:
            if self.max_bw >= self._full_bw * FULL_BW_THRESH:
                self._full_bw = self.max_bw
                self._full_bw_count = 0
            else:
                self._full_bw_count += 1
                self.full_bw_reached = self._full_bw_count >= FULL_BW_COUNT
        if self.full_bw_reached:
            self._enter(State.DRAIN)

    def _check_drain(self, now: float) -> None:
        # Draft "Drain": leave once the queue Startup built is gone.
        if self.state is State.DRAIN and self.bytes_in_flight <= self._inflight(1.0):
            self._start_probe_bw_down(now)

    def _enter(self, state: State) -> None:
        self.state = state
        self.pacing_gain, self.cwnd_gain = {
            State.STARTUP: (STARTUP_PACING_GAIN, STARTUP_CWND_GAIN),
            State.DRAIN: (DRAIN_PACING_GAIN, STARTUP_CWND_GAIN),
            State.PROBE_BW_DOWN: (PROBE_DOWN_PACING_GAIN, DEFAULT_CWND_GAIN),
            State.PROBE_BW_CRUISE: (1.0, DEFAULT_CWND_GAIN),
            State.PROBE_BW_REFILL: (1.0, DEFAULT_CWND_GAIN),
            State.PROBE_BW_UP: (PROBE_UP_PACING_GAIN, PROBE_UP_CWND_GAIN),
            State.PROBE_RTT: (1.0, PROBE_RTT_CWND_GAIN),
        }[state]

    def _start_probe_bw_down(self, now: float) -> None:
        # Draft "ProbeBW_DOWN": pace below bw to drain any queue the last probe left,
        # then wait a randomized 2-3 s (desynchronizes competing flows) before the next.
        # The probe's own losses are still reported for about a round: they keep
        # counting against it (bw_probe_samples stays set until the next Refill).
        self._probe_up_cnt = math.inf
        self._bw_probe_wait = PROBE_WAIT_BASE + self._rng.random()
        self._cycle_stamp = now
        self._rounds_since_bw_probe = 0
        self._next_round_delivered = self.delivered
        self._enter(State.PROBE_BW_DOWN)

    def _start_probe_bw_refill(self) -> None:
        # Draft "ProbeBW_REFILL": forget the short-term bounds and refill the pipe at
        # 1.0 x bw for one round, so the Up phase's samples measure the path.
        self.bw_lo = math.inf
        self.inflight_lo = math.inf
        self._bw_probe_samples = False
        self._probe_up_rounds = 0
        self._probe_up_acks = 0
        self._next_round_delivered = self.delivered
        if self._app_limited_until == 0:
            # An app-limited cycle measured the application, not the path: keep the
            # samples of the last cycle that did measure it.
            self._advance_max_bw_filter()
        self._enter(State.PROBE_BW_REFILL)

    def _start_probe_bw_up(self, now: float) -> None:
        self._bw_probe_samples = True
        self._cycle_stamp = now
        self._next_round_delivered = self.delivered
        self._up_rounds = 0
        self._up_bw_base = self.max_bw
        self._enter(State.PROBE_BW_UP)
        self._raise_inflight_hi_slope()

    def _time_to_probe_bw(self, now: float) -> bool:
        # Draft "Time scale for bandwidth probing": 2-3 s, or as often as Reno would
        # have grown by one BDP, whichever comes first.
        reno_rounds = min(int(self.bdp() // self.mss), MAX_RENO_ROUNDS)
        return (
            now - self._cycle_stamp > self._bw_probe_wait
            or self._rounds_since_bw_probe >= reno_rounds
        )

    def _update_probe_bw_phase(self, now: float) -> None:
        if self.state not in _PROBE_BW:
            return
        if self.state is State.PROBE_BW_DOWN:
            if self._time_to_probe_bw(now):
                self._start_probe_bw_refill()
            elif self.bytes_in_flight <= min(self._inflight(1.0), self._inflight_with_headroom()):
                self._enter(State.PROBE_BW_CRUISE)
        elif self.state is State.PROBE_BW_CRUISE:
            if self._time_to_probe_bw(now):
                self._start_probe_bw_refill()
        elif self.state is State.PROBE_BW_REFILL:
            if self._round_start:
                self._start_probe_bw_up(now)
        elif self.state is State.PROBE_BW_UP:
            # Leave Up after at least one min_rtt once the 1.25 x BDP that probes the
            # path is in flight, or when bw stopped growing 25 % a round for 3 rounds
            # (draft "BBRCheckTimeToGoDown"); too much loss ends it earlier.
            if self._round_start:
                if self.max_bw >= self._up_bw_base * FULL_BW_THRESH:
                    self._up_bw_base = self.max_bw
                    self._up_rounds = 0
                else:
                    self._up_rounds += 1
            if self._up_rounds >= FULL_BW_COUNT or (
                now - self._cycle_stamp > self.min_rtt
                and self.bytes_in_flight >= self._inflight(PROBE_UP_PACING_GAIN)
            ):
                self._start_probe_bw_down(now)

    def _update_min_rtt(self, now: float, rtt: float) -> None:
        # Draft "BBR.min_rtt Min Filter": probe_rtt_min_delay is the minimum over the
        # last ProbeRTTInterval; min_rtt takes it when lower or when 10 s old.
        if rtt <= 0:
            return
        expired = now > self.probe_rtt_min_stamp + PROBE_RTT_INTERVAL
        # ProbeRTT is due when the window expired, even though this sample restarts it.
        self._probe_rtt_expired = expired
        if rtt < self.probe_rtt_min_delay or expired:
            self.probe_rtt_min_delay = rtt
            self.probe_rtt_min_stamp = now
        min_rtt_expired = now > self._min_rtt_stamp + MIN_RTT_FILTER_LEN
        if self.probe_rtt_min_delay < self.min_rtt or min_rtt_expired:
            self.min_rtt = self.probe_rtt_min_delay
            self._min_rtt_stamp = self.probe_rtt_min_stamp

    def _check_probe_rtt(self, now: float) -> None:
        # Draft "ProbeRTT": when no RTT sample reached the minimum for 5 s, drain to
        # half a BDP for 200 ms and one round, so the queue empties and min_rtt is seen.
        if self.state is not State.PROBE_RTT:
            if self._probe_rtt_expired and math.isfinite(self.min_rtt):
                self._prior_cwnd = self.cwnd
                self._probe_rtt_done_stamp = 0.0
                self._probe_rtt_round_done = False
                self._bw_probe_samples = False
                self._enter(State.PROBE_RTT)
            return
        if self._probe_rtt_done_stamp == 0.0:
            if self.bytes_in_flight <= self._probe_rtt_cwnd():
                self._probe_rtt_done_stamp = now + PROBE_RTT_DURATION
                self._next_round_delivered = self.delivered
            return
        if self._round_start:
            self._probe_rtt_round_done = True
        if self._probe_rtt_round_done and now > self._probe_rtt_done_stamp:
            self.probe_rtt_min_stamp = now
            self.cwnd = max(self.cwnd, self._prior_cwnd)
            self.bw_lo = math.inf
            self.inflight_lo = math.inf
            if self.full_bw_reached:
                # Draft: leave ProbeRTT for ProbeBW_DOWN's bookkeeping, then Cruise.
                self._start_probe_bw_down(now)
                self._enter(State.PROBE_BW_CRUISE)
            else:
                self._enter(State.STARTUP)

    def _probe_rtt_cwnd(self) -> float:
        return max(self.bdp(PROBE_RTT_CWND_GAIN), MIN_PIPE_CWND_PACKETS * self.mss)

    def _inflight_with_headroom(self) -> float:
        if not math.isfinite(self.inflight_hi):
            return math.inf
        headroom = max(self.mss, HEADROOM * self.inflight_hi)
        return max(self.inflight_hi - headroom, MIN_PIPE_CWND_PACKETS * self.mss)

    # -- controls --------------------------------------------------------------------

    def _bound_bw(self) -> None:
        # Draft "BBRBoundBWForModel".
        self.bw = min(self.max_bw, self.bw_lo)

    def _set_pacing_rate(self) -> None:
        # Draft "Pacing Rate": gain x bw, 1 % under; before the pipe is known full the
        # rate never falls (a sample from a slow start must not throttle Startup).
        if self.bw <= 0:
            return
        rate = self.pacing_gain * self.bw * (1 - PACING_MARGIN)
        if self.full_bw_reached or rate > self.pacing_rate:
            self.pacing_rate = rate

    def _set_cwnd(self, acked: int) -> None:
        # Draft "Congestion Window": grow towards cwnd_gain x BDP by what was acked,
        # then apply the ProbeRTT and model bounds.
        target = self._max_inflight()
        if self.full_bw_reached:
            cwnd = min(self.cwnd + acked, target)
        elif self.cwnd < target or self.delivered < INITIAL_CWND_PACKETS * self.mss:
            cwnd = self.cwnd + acked
        else:
            cwnd = self.cwnd
        floor = MIN_PIPE_CWND_PACKETS * self.mss
        cwnd = max(cwnd, floor)
        if self.state is State.PROBE_RTT:
            cwnd = min(cwnd, self._probe_rtt_cwnd())
        if self.state in _PROBE_BW and self.state is not State.PROBE_BW_CRUISE:
            cap = self.inflight_hi
        elif self.state in (State.PROBE_RTT, State.PROBE_BW_CRUISE):
            cap = self._inflight_with_headroom()
        else:
            cap = math.inf
        cap = max(min(cap, self.inflight_lo), floor)
        self.cwnd = int(min(cwnd, cap))
