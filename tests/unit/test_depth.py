"""The depth of a transfer follows the path (client/depth.py): on a simulated path of a
given round trip and rate it fills a long fat pipe, stays at its floor where the floor
already fills the path, and never passes its ceiling."""

from __future__ import annotations

import heapq

import pytest

from quicfs.client.depth import Depth

MiB = 1024 * 1024


def transfer(depth: Depth, rtt: float, rate: float, chunks: int = 400, chunk: int = MiB
             ) -> tuple[float, int]:
    """Read ``chunks`` chunks over a path of round trip ``rtt`` whose server sends at
    ``rate`` bytes/s, one answer after another; keep ``depth.value`` in flight. The
    throughput (bytes/s) and the most ever in flight."""
    now, sent, done, busy_until, most = 0.0, 0, 0, 0.0, 0
    answers: list[tuple[float, float]] = []  # (answered at, sent at)
    while done < chunks:
        while sent < chunks and sent - done < depth.value:
            # The request reaches the server after half a round trip, its answer leaves
            # once the link is free and arrives half a round trip after that.
            busy_until = max(busy_until, now + rtt / 2) + chunk / rate
            heapq.heappush(answers, (busy_until + rtt / 2, now))
            sent += 1
            most = max(most, sent - done)
        now, at = heapq.heappop(answers)
        depth.answered(now - at)
        done += 1
    return chunks * chunk / now, most


def test_a_long_fat_pipe_is_filled():
    """100 ms at 1 Gbit/s holds 12.5 MB: 8 chunks of 1 MiB in flight would move 77 MB/s."""
    rate = 125e6
    fixed, _ = transfer(Depth(8, 8), 0.100, rate)
    assert fixed < 0.65 * rate
    tuned = Depth(8, 32)
    got, most = transfer(tuned, 0.100, rate)
    assert got > 0.9 * rate, got
    assert 13 <= most <= 32


def test_a_path_the_floor_fills_keeps_the_floor():
    """50 ms at 100 Mbit/s holds 0.6 MiB: 8 chunks only queue. The first two answers
    come within twice the least time (the first is the least), then queueing shows and
    the depth comes back to 8."""
    rate = 12.5e6
    tuned = Depth(8, 32)
    got, most = transfer(tuned, 0.050, rate)
    assert got > 0.95 * rate
    assert most <= 10 and tuned.value == 8


@pytest.mark.parametrize("rtt, rate", [(0.0002, 1e9), (0.3, 125e6), (0.01, 1e6)])
def test_never_past_the_ceiling_nor_under_the_floor(rtt, rate):
    tuned = Depth(4, 16)
    _, most = transfer(tuned, rtt, rate)
    assert 4 <= tuned.value <= 16 and most <= 16


def test_a_fixed_depth_stays_fixed():
    fixed = Depth(5, 5)
    for took in (1.0, 0.001, 9.0, 0.0005):
        fixed.answered(took)
    assert fixed.value == 5
