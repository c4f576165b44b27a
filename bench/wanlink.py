"""The WAN emulator's forwarder: packets read from one TUN device are written to the other
after random loss, a drop-tail bottleneck queue drained at the link's rate, and a one-way
delay; TCP and UDP alike, both directions (kernel netem and fq are not available here).

    python bench/wanlink.py --a NS:DEV --b NS:DEV --delay-ms 25 --rate-mbit 100 \\
        [--loss 0.005] [--queue-bytes N] [--seed 1] [--stats FILE]

Each DEV is a persistent TUN device (``ip tuntap add mode tun``) in network namespace NS;
the forwarder enters each namespace to attach to its device (TUNSETIFF works by name in
the namespace of the opener), so it may itself run anywhere. SIGUSR1 and exit write the
counters to FILE as JSON. The scheduler (:class:`Direction`) is pure, with ``now`` passed
in; bench/wan_net.py builds the namespaces and validates a link against its settings.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

#: Packets read from one device before the other gets a turn (and before due packets are
#: written): batches amortise the select() call without starving the reverse direction.
READ_BATCH = 64
#: Packets due within this many seconds are written now: the loop wakes once per group.
EARLY = 50e-6


@dataclass
class Counters:
    packets: int = 0  # offered to this direction
    bytes: int = 0
    lost: int = 0  # random loss
    overflow: int = 0  # drop-tail: the bottleneck queue was full
    forwarded: int = 0  # admitted: they arrive after their delay


class Direction:
    """One direction of the link, as a schedule: a packet offered at ``now`` is lost at
    random (probability ``loss``), or dropped because the bottleneck queue already holds
    ``queue_bytes``, or leaves the bottleneck when those ahead of it have (at ``rate``
    bytes/s; 0 means unlimited) and arrives ``delay`` seconds later.

    Departure times only grow and the delay is the same for all, so arrivals come out in
    the order packets went in: a FIFO, no heap."""

    def __init__(self, *, delay: float, rate: float, queue_bytes: int, loss: float,
                 rng: random.Random) -> None:
        if delay < 0 or rate < 0 or not 0 <= loss < 1:
            raise ValueError(f"bad link: delay={delay} rate={rate} loss={loss}")
        self.delay = delay
        self.rate = rate
        self.queue_bytes = queue_bytes
        self.loss = loss
        self.rng = rng
        self.busy_until = 0.0  # when the bottleneck has sent everything admitted so far
        self.counters = Counters()

    def backlog(self, now: float) -> float:
        """Bytes admitted but not yet through the bottleneck at ``now``."""
        return max(self.busy_until - now, 0.0) * self.rate

    def offer(self, size: int, now: float) -> float | None:
        """When a packet of ``size`` bytes offered at ``now`` arrives, or None if dropped."""
        c = self.counters
        c.packets += 1
        c.bytes += size
        if self.loss and self.rng.random() < self.loss:
            c.lost += 1
            return None
        if not self.rate:
            c.forwarded += 1
            return now + self.delay
        start = self.busy_until if self.busy_until > now else now
        if (start - now) * self.rate + size > self.queue_bytes:
            c.overflow += 1
            return None
        self.busy_until = start + size / self.rate
        c.forwarded += 1
        return self.busy_until + self.delay


def bdp_bytes(rtt: float, rate: float) -> int:
    """The bandwidth-delay product in bytes (``rate`` in bytes/s)."""
    return int(rtt * rate)


# ---------------------------------------------------------------------- namespaces, TUN
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd`` (setns(2))."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


def open_tun(ns: str, dev: str) -> int:
    """Attach to TUN device ``dev`` in namespace ``ns``; a non-blocking fd of raw IP."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path(ns), os.O_RDONLY)
    try:
        setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)
    return fd


# ---------------------------------------------------------------------- the loop
def forward(fd_a: int, fd_b: int, ab: Direction, ba: Direction, *,
            clock=time.monotonic) -> None:
    """Forever: read from each device, schedule, write what is due to the other."""
    # One FIFO per direction of (arrival time, packet); parallel lists avoid a tuple each.
    due = {fd_a: (ab, deque(), deque(), fd_b), fd_b: (ba, deque(), deque(), fd_a)}
    pairs = list(due.values())
    fds = [fd_a, fd_b]
    read, write = os.read, os.write
    while True:
        now = clock()
        wake = None
        for _d, times, packets, out in pairs:
            limit = now + EARLY
            while times and times[0] <= limit:
                times.popleft()
                try:
                    write(out, packets.popleft())
                except OSError:
                    pass  # the kernel refused it (device down): a loss
            if times and (wake is None or times[0] < wake):
                wake = times[0]
        timeout = None if wake is None else max(wake - clock(), 0.0)
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            direction, times, packets, _out = due[fd]
            offer = direction.offer
            now = clock()
            for _ in range(READ_BATCH):
                try:
                    pkt = read(fd, 65536)
                except BlockingIOError:
                    break
                at = offer(len(pkt), now)
                if at is not None:
                    times.append(at)
                    packets.append(pkt)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="NS:DEV, one end")
    p.add_argument("--b", required=True, help="NS:DEV, the other end")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay")
    p.add_argument("--rate-mbit", type=float, default=0.0, help="each way; 0: unlimited")
    p.add_argument("--loss", type=float, default=0.0, help="random loss, each way (0..1)")
    p.add_argument("--queue-bytes", type=int, default=0,
                   help="bottleneck queue (drop-tail); default: one BDP, at least 64 KiB")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stats", help="write counters here (JSON) on SIGUSR1 and at exit")
    args = p.parse_args(argv)
    delay, rate = args.delay_ms / 1000, args.rate_mbit * 1e6 / 8
    queue = args.queue_bytes or max(bdp_bytes(2 * delay, rate), 64 * 1024)
    rng = random.Random(args.seed)
    ab = Direction(delay=delay, rate=rate, queue_bytes=queue, loss=args.loss, rng=rng)
    ba = Direction(delay=delay, rate=rate, queue_bytes=queue, loss=args.loss, rng=rng)
    fd_a = open_tun(*args.a.split(":", 1))
    fd_b = open_tun(*args.b.split(":", 1))

    def dump(*_: object) -> None:
        if args.stats:
            tmp = args.stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"ab": asdict(ab.counters), "ba": asdict(ba.counters),
                           "queue_bytes": queue}, f)
            os.replace(tmp, args.stats)

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"wanlink: forwarding {args.a} <-> {args.b}", flush=True)
    try:
        forward(fd_a, fd_b, ab, ba)
    finally:
        dump()


if __name__ == "__main__":
    sys.exit(main())
