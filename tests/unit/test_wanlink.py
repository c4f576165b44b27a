"""The WAN emulator's scheduler (bench/wanlink.py): delay, rate, drop-tail queue and random
loss, with time passed in."""

from __future__ import annotations

import itertools
import random

import pytest

from bench.wanlink import Direction, bdp_bytes


def direction(*, delay=0.025, rate=100e6 / 8, queue=64_000, loss=0.0, seed=1) -> Direction:
    return Direction(delay=delay, rate=rate, queue_bytes=queue, loss=loss,
                     rng=random.Random(seed))


def test_an_idle_link_delays_by_serialisation_plus_delay():
    d = direction()
    # 1500 bytes at 12.5 MB/s take 120 µs on the wire, then 25 ms of propagation.
    assert d.offer(1500, 10.0) == pytest.approx(10.0 + 120e-6 + 0.025)


def test_back_to_back_packets_leave_at_the_rate_in_order():
    d = direction(queue=10**9)
    arrivals = [d.offer(1250, 0.0) for _ in range(1000)]
    # 1000 x 1250 bytes at 12.5 MB/s: the last one leaves at 0.1 s.
    assert arrivals[-1] == pytest.approx(0.1 + 0.025)
    assert arrivals == sorted(arrivals)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(arrivals)}
    assert gaps == {100e-6}


def test_the_rate_over_a_long_offered_overload_is_the_links():
    d = direction(queue=bdp_bytes(0.05, 12.5e6))
    last = 0.0
    # Offer twice the rate for one second: half gets through, at the link's rate.
    for i in range(20_000):
        at = d.offer(1250, i * 50e-6)
        if at is not None:
            last = at
    sent = d.counters.forwarded * 1250
    assert sent == pytest.approx(12.5e6 + bdp_bytes(0.05, 12.5e6), rel=0.01)
    assert d.counters.overflow == 20_000 - d.counters.forwarded
    assert last - 0.025 == pytest.approx(sent / 12.5e6, rel=1e-6)


def test_the_queue_drops_the_tail_once_it_holds_its_size():
    d = direction(queue=3000)
    assert d.offer(1500, 0.0) is not None
    assert d.offer(1500, 0.0) is not None
    assert d.offer(1500, 0.0) is None  # 3000 bytes already waiting
    assert d.counters.overflow == 1
    # Once one has left the bottleneck (120 µs), there is room again.
    assert d.offer(1500, 121e-6) is not None
    assert d.backlog(121e-6) == pytest.approx(3000 - 1e-6 * 12.5e6, abs=1)


def test_random_loss_takes_its_share_and_is_repeatable():
    runs = []
    for _ in range(2):
        d = direction(rate=0, loss=0.02, seed=7)
        runs.append([d.offer(100, i * 1e-3) is None for i in range(50_000)])
        assert d.counters.lost == sum(runs[-1])
        assert d.counters.lost / 50_000 == pytest.approx(0.02, rel=0.1)
    assert runs[0] == runs[1]


def test_without_a_rate_only_the_delay_applies():
    d = direction(rate=0, delay=0.05)
    assert [d.offer(1500, 1.0) for _ in range(3)] == [1.05] * 3
    assert d.counters.forwarded == 3


@pytest.mark.parametrize("kw", [{"delay": -1}, {"rate": -1}, {"loss": 1.0}])
def test_impossible_settings_are_refused(kw):
    with pytest.raises(ValueError, match="bad link"):
        direction(**kw)
