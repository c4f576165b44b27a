"""Where a server connection sends: the client's address, followed when it changes.

A client's address changes when it migrates (RFC 9000 9.2) or when a NAT in front of it
rebinds its port. qh3 2.1's core keeps at most four paths per connection and never drops
one (src/quic/path.rs, MAX_PATHS): the packets from a fifth address are dropped unread,
so a client behind a NAT that rebinds every second lost its connection after the third
move. So the server's driver tells qh3 one address for the whole connection, the first,
and follows the client itself, with the same rules (RFC 9000 8 and 9.3):

- a packet from a new address makes that address a candidate only once qh3 has
  authenticated it and had not seen it before (9.3: junk or a replay with a live
  connection id moves nothing; the driver asks the engine, engine.py), and a PING goes
  there: only a client that is really there can acknowledge it (path validation, 8.2,
  by PING instead of PATH_CHALLENGE);
- until then the candidate gets what an unvalidated address may get: at most three
  times the bytes it sent (8.1, 9.3), and at most a minimum congestion window (two full
  datagrams) per round trip (9.4); what does not fit waits, and goes to the candidate
  once it is validated;
- the PING goes first, in a datagram of its own, ahead of what waits: a NAT rebinding
  in the middle of a download leaves the client sending nothing but ACKs of some 40
  bytes, whose three times buy no full datagram. The driver has the engine make what
  it had to send before the PING (held here), so the packet made after it carries the
  PING alone. Left to the engine, the PING rode in the first full datagram made after
  the client's ACK, which waited for a budget the client's ACKs never gave, and the
  client, hearing nothing, gave the connection up (8.2: validation is what lets the
  data go, so it cannot wait behind the data);
- a packet from the validated address meanwhile ends the candidacy (a spoofed or
  replayed packet must not move the connection, 9.3.2), and what waited goes there;
- qh3 does not send a lost PING again: an unanswered one is sent again after three
  round trips, and after four the candidacy ends (the next authenticated packet from
  there starts a new one), so one lost datagram never stalls the connection for good.

Pure: addresses and byte counts in, where each datagram goes out; ``ping`` has a PING
sent and gives back the datagrams that carry it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

#: Datagrams waiting for a candidate's validation, at most (beyond: dropped, and QUIC's
#: loss recovery sends them again).
MAX_HELD = 1024
#: PING uids of ours: apart from the driver's keep-alive pings (uid 0).
_FIRST_UID = 1 << 32
#: kMinimumWindow (RFC 9002 7.2) of the largest datagrams the server sends.
MIN_WINDOW = 2 * 1452
#: Round trips a candidate's PING waits for its acknowledgement before another goes.
PING_ROUNDS = 3
#: PINGs a candidate gets before its candidacy ends.
MAX_PINGS = 4


@dataclass(eq=False)
class _Candidate:
    addr: object
    uids: list[int]
    since: float
    pinged_at: float
    received: int = 0
    sent: int = 0
    held: list[bytes] = field(default_factory=list)


class PeerPath:
    def __init__(self, first: object, ping: Callable[[int], list[bytes]],
                 rtt: Callable[[], float]) -> None:
        #: What qh3 is told the client's address is, for the whole connection.
        self.engine_addr = first
        #: The validated address: where datagrams go.
        self.addr = first
        #: Moves followed (migrations and NAT rebindings).
        self.moves = 0
        self._ping = ping
        self._rtt = rtt
        self._candidate: _Candidate | None = None
        self._next_uid = _FIRST_UID
        #: A PING is being made: what the engine makes meanwhile waits behind it.
        self._pinging = False

    @property
    def pending(self) -> bool:
        """A candidate waits for validation."""
        return self._candidate is not None

    def received(self, addr: object, nbytes: int, now: float
                 ) -> list[tuple[bytes, object]]:
        """A datagram of ``nbytes`` from ``addr`` held a packet the engine authenticated;
        what was held for a candidate that this ends, to send."""
        candidate = self._candidate
        if addr == self.addr:
            self._candidate = None
            return [(d, self.addr) for d in candidate.held] if candidate else []
        if candidate is None or candidate.addr != addr:
            held = candidate.held if candidate is not None else []
            candidate = self._candidate = _Candidate(addr, [], now, now, held=held)
            self._ping_candidate(candidate, now)
        candidate.received += nbytes
        return self._release_within_budget(candidate, now)

    def _ping_candidate(self, candidate: _Candidate, now: float) -> None:
        candidate.uids.append(self._next_uid)
        candidate.pinged_at = now
        uid, self._next_uid = self._next_uid, self._next_uid + 1
        # What the engine had to send is made first and held (route()), none of it
        # sent before the PING; the PING's datagram then goes ahead of all that waits.
        self._pinging = True
        try:
            probe = self._ping(uid)
        finally:
            self._pinging = False
        candidate.held[:0] = probe

    def _ping_wait(self) -> float:
        return max(PING_ROUNDS * self._rtt(), 0.05)

    def deadline(self) -> float:
        """When :meth:`poll` has something to do, at the latest."""
        candidate = self._candidate
        return math.inf if candidate is None else candidate.pinged_at + self._ping_wait()

    def poll(self, now: float) -> list[tuple[bytes, object]]:
        """Ping an unanswered candidate again, or end its candidacy after MAX_PINGS:
        what it held then goes to the validated address."""
        candidate = self._candidate
        if candidate is None or now < candidate.pinged_at + self._ping_wait():
            return []
        if len(candidate.uids) < MAX_PINGS:
            self._ping_candidate(candidate, now)
            return self._release_within_budget(candidate, now)
        self._candidate = None
        return [(d, self.addr) for d in candidate.held]

    def acknowledged(self, uid: int) -> list[tuple[bytes, object]]:
        """qh3 says PING ``uid`` was acknowledged: if it was the candidate's, the client
        is there, and the connection moves; what was held goes there."""
        candidate = self._candidate
        if candidate is None or uid not in candidate.uids:
            return []
        self._candidate = None
        self.addr = candidate.addr
        self.moves += 1
        return [(d, self.addr) for d in candidate.held]

    def route(self, datagrams: list[bytes], now: float) -> list[tuple[bytes, object]]:
        """Where the datagrams qh3 made go (those held for a candidate do not, yet)."""
        candidate = self._candidate
        if candidate is None:
            return [(d, self.addr) for d in datagrams]
        # Beyond MAX_HELD the newest go (as lost: QUIC sends them again). Never the
        # oldest, and never out of order: qh3 takes a packet passed by later ones as
        # lost, and a burst of such losses shrinks its window to nothing. The PING
        # alone passes them (_ping_candidate): its acknowledgement may cost one loss
        # event for what it passed, and without it none of that would ever go.
        candidate.held.extend(datagrams[:max(0, MAX_HELD - len(candidate.held))])
        if self._pinging:
            return []
        return self._release_within_budget(candidate, now)

    def _release_within_budget(self, candidate: _Candidate, now: float
                               ) -> list[tuple[bytes, object]]:
        rounds = 1 + int((now - candidate.since) / max(self._rtt(), 0.001))
        budget = min(3 * candidate.received, rounds * MIN_WINDOW)
        out = []
        while candidate.held and candidate.sent + len(candidate.held[0]) <= budget:
            data = candidate.held.pop(0)
            candidate.sent += len(data)
            out.append((data, candidate.addr))
        return out


__all__ = ["MAX_HELD", "MIN_WINDOW", "PeerPath"]
