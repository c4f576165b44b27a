"""What a server refused or dropped, counted by kind, and logged without flooding.

An attacker decides how often a refusal happens; the log must not let him decide how
much is written. Each kind is logged the first time, then at most once per interval,
with how many of that kind went unlogged since; every one is counted, for the periodic
summary (the gateway's) and for tests.

Pure: the clock is passed in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

#: Seconds between two log lines of one kind.
INTERVAL = 10.0


class Refusals:
    def __init__(self, log: logging.Logger, interval: float = INTERVAL,
                 level: int = logging.INFO) -> None:
        self._log = log
        self.level = level
        self.interval = interval
        #: Every refusal since the start, by kind.
        self.total: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}
        self._summarised: Counter[str] = Counter()

    def note(self, kind: str, detail: str | Callable[[], str], now: float) -> None:
        """One refusal of ``kind`` ("Initial that did not decrypt", ...); ``detail``
        names the peer and the reason (a callable: made only if it is logged, as most
        are not)."""
        self.total[kind] += 1
        last = self._logged_at.get(kind)
        if last is not None and now - last < self.interval:
            self._unlogged[kind] += 1
            return
        more = self._unlogged.pop(kind, 0)
        self._logged_at[kind] = now
        since = f" (and {more} more in {now - last:.0f} s)" if more and last is not None else ""
        self._log.log(self.level, "%s: %s%s", kind, detail() if callable(detail) else detail, since)

    def since_last_summary(self) -> dict[str, int]:
        """The counts of each kind since the last call."""
        delta = {k: n - self._summarised[k] for k, n in self.total.items()
                 if n > self._summarised[k]}
        self._summarised = Counter(self.total)
        return delta


__all__ = ["INTERVAL", "Refusals"]
