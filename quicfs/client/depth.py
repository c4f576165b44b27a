"""How many chunk requests a transfer keeps in flight: enough to fill the path, no more.

A path carries its bandwidth-delay product in flight; a fixed window of 8 MiB caps a
100 ms path at ~80 MB/s, while a large one only queues on a slow path and holds memory.
The depth follows the answers (pure: the caller passes each answer's time). While the
path is not full, a request is answered in about the least time seen, its round trip plus
one chunk's transfer; once it is full, more depth only adds queueing, and answers take
longer. So the depth grows by one per answer that came within twice the least time (it
doubles per round trip, as a slow start does), and shrinks by one per answer that took
over four times it (a path that got slower). It stays within ``low`` and ``high``, and so
does memory: ``high`` chunks at most.
"""

from __future__ import annotations

import math


class Depth:
    __slots__ = ("high", "least", "low", "value")

    def __init__(self, low: int, high: int) -> None:
        self.low = max(1, low)
        self.high = max(self.low, high)
        self.value = self.low
        self.least = math.inf

    def answered(self, took: float) -> None:
        """A request of this transfer was answered ``took`` seconds after it was sent."""
        self.least = min(self.least, took)
        if took <= 2 * self.least:
            self.value = min(self.high, self.value + 1)
        elif took > 4 * self.least:
            self.value = max(self.low, self.value - 1)
