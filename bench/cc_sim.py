"""Congestion controllers on a simulated bottleneck: our BBR (quicfs/transport/bbr.py)
beside aioquic's reno and cubic, and what the controller costs per packet.

    .venv/bin/python bench/cc_sim.py [--seconds S] [--no-e2e]

Three tables, all on the fake clock of tests/unit/test_bbr.py's simulator (a drop-tail
queue of one BDP, random loss, per-packet acks):

1. each controller alone through aioquic's controller API: share of the link used and
   mean queueing delay, on the issue 21 links, and on loopback-like ones (1 Gbit/s,
   0.2 ms, a 256 KB buffer) whose receiver acks in bursts like a busy Python peer:
   every N packets or T ms after the first it holds, whichever comes first;
2. an aioquic client and server (QuicConnection pair) through the same link, the client
   sending bulk data: "quicfs-bbr" with BBR's pacer and with aioquic's (cwnd / srtt),
   reno, cubic: share of the link and mean queueing delay;
3. CPU per packet (one send and one ack) of the pure controller and of the adapter.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.tls import Epoch

from quicfs.transport import aioquic_cc
from quicfs.transport.bbr import Bbr
from tests.unit.test_bbr import MBIT, MSS, Flow, Link, Sim, run_aioquic

LINKS = [  # (Mbit/s, RTT s, loss)
    (100, 0.050, 0.0),
    (100, 0.050, 0.005),
    (100, 0.050, 0.02),
    (20, 0.100, 0.001),
    (10, 0.010, 0.01),
]
# Loopback-like, with an ack-aggregating receiver: (Mbit/s, RTT s, acks every N, T s).
LOW_RTT_LINKS = [
    (1000, 0.0002, 1, 0.0),
    (1000, 0.0002, 64, 0.001),
    (1000, 0.0002, 1000, 0.001),  # aioquic's receiver: an ack 1 ms after the first packet
    (1000, 0.0002, 2, 0.025),  # RFC 9000 13.2.2: every second packet, max_ack_delay 25 ms
]
LOW_RTT_QUEUE = 256 * 1024  # a socket buffer's worth, not one BDP (25 KB)
LOW_RTT_SECONDS = 1.0  # 100 000 packets a second cost the simulator about 2 s
ALGORITHMS = [aioquic_cc.NAME, "reno", "cubic"]


def simulated(seconds: float) -> None:
    print(f"1. one flow, {seconds:g} s: share of the link / mean queueing delay")
    print(f"{'link':28}" + "".join(f"{a:>22}" for a in ALGORITHMS))
    for mbit, rtt, loss in LINKS:
        row = f"{mbit} Mbit/s {rtt * 1000:g} ms {loss:.1%} loss".ljust(28)
        for algorithm in ALGORITHMS:
            rate = mbit * MBIT
            link = Link(rate=rate, delay=rtt / 2, queue=int(rate * rtt), loss=loss)
            flow = Flow(algorithm)
            Sim(link, [flow]).run(seconds)
            delay = link.queue_delay_sum / max(link.queue_delay_n, 1)
            row += f"{flow.acked / (rate * seconds):>12.1%} {delay * 1000:>6.1f} ms"
        print(row, flush=True)
    seconds = min(seconds, LOW_RTT_SECONDS)
    print(f"\n{seconds:g} s, a 256 KB buffer, acks every N packets or T ms, whichever first")
    print(f"{'link':34}" + "".join(f"{a:>22}" for a in ALGORITHMS))
    for mbit, rtt, every, timer in LOW_RTT_LINKS:
        label = f"{mbit} Mbit/s {rtt * 1000:g} ms N={every} T={timer * 1000:g} ms"
        row = label.ljust(34)
        for algorithm in ALGORITHMS:
            rate = mbit * MBIT
            link = Link(rate=rate, delay=rtt / 2, queue=LOW_RTT_QUEUE, ack_every=every,
                        ack_timer=timer)
            flow = Flow(algorithm)
            Sim(link, [flow]).run(seconds)
            delay = link.queue_delay_sum / max(link.queue_delay_n, 1)
            row += f"{flow.acked / (rate * seconds):>12.1%} {delay * 1000:>6.2f} ms"
        print(row, flush=True)


def end_to_end(seconds: float) -> None:
    print(f"\n2. aioquic client -> server, {seconds:g} s with the handshake: share of the link")
    runs = [
        ("quicfs-bbr, BBR pacer", aioquic_cc.NAME, True),
        ("quicfs-bbr, aioquic pacer", aioquic_cc.NAME, False),
        ("reno", "reno", True),
        ("cubic", "cubic", True),
    ]
    for mbit, rtt, loss in [(100, 0.050, 0.005), (20, 0.050, 0.005), (100, 0.050, 0.0)]:
        for label, algorithm, pace in runs:
            t0 = time.process_time()
            got, sent, cc_seconds, queue_delay = run_aioquic(
                algorithm, rate_mbit=mbit, rtt=rtt, loss=loss, seconds=seconds, pace=pace
            )
            cpu = time.process_time() - t0
            print(
                f"{mbit} Mbit/s {rtt * 1000:g} ms {loss:.1%} loss  {label:26} "
                f"{got / (mbit * MBIT * seconds):6.1%}  queue {queue_delay * 1000:5.1f} ms  "
                "controller "
                f"{1e6 * cc_seconds / max(sent, 1):5.1f} us/datagram, whole run "
                f"{1e6 * cpu / max(sent, 1):6.1f} us/datagram",
                flush=True,
            )


def cost(packets: int = 200_000) -> None:
    print(f"\n3. CPU per packet (send + ack), {packets} packets, steady state")
    bbr = Bbr(mss=MSS, now=0.0, rng=random.Random(1))
    now, gap, rtt = 0.0, MSS / (100 * MBIT), 0.05
    records: deque = deque()
    t0 = time.process_time()
    for _ in range(packets):
        records.append(bbr.on_send(now, MSS))
        if now >= rtt:
            bbr.on_ack(now, records.popleft())
        now += gap
    pure = time.process_time() - t0
    cc = aioquic_cc.BbrCongestionControl(max_datagram_size=MSS, rng=random.Random(1))
    sent: deque = deque()
    now = 0.0
    t0 = time.process_time()
    for number in range(packets):
        packet = QuicSentPacket(Epoch.ONE_RTT, True, True, False, number, 0, now, MSS)
        cc.on_packet_sent(packet=packet)
        sent.append(packet)
        if now >= rtt:
            cc.on_packet_acked(now=now, packet=sent.popleft())
        now += gap
    adapter = time.process_time() - t0
    print(f"quicfs.transport.bbr.Bbr          {1e6 * pure / packets:6.2f} us")
    print(f"through aioquic_cc (+ packet obj) {1e6 * adapter / packets:6.2f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-e2e", action="store_true", help="skip the aioquic pair (slow)")
    args = ap.parse_args()
    simulated(args.seconds)
    if not args.no_e2e:
        end_to_end(min(args.seconds, 10.0))
    cost()


if __name__ == "__main__":
    main()
