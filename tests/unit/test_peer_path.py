"""The server follows its client's address itself, validating each new one by a PING
(quicfs/transport/peer_path.py): addresses and bytes in, where datagrams go out."""

from __future__ import annotations

import pytest

from quicfs.transport.quic.peer_path import PeerPath

A, B, C = ("10.0.0.1", 1000), ("10.0.0.1", 2000), ("10.0.0.9", 3000)
FULL = b"x" * 1452


def path() -> tuple[PeerPath, list[int]]:
    """A path whose engine makes no datagram at once for a PING (the PING goes out in
    what it makes next, held in order like the rest)."""
    pings: list[int] = []

    def ping(uid: int) -> list[bytes]:
        pings.append(uid)
        return []

    return PeerPath(A, ping, lambda: 0.010), pings


def test_a_move_is_followed_once_the_client_answers_there() -> None:
    p, pings = path()
    assert p.route([FULL], 0.0) == [(FULL, A)]
    assert p.received(B, 1200, 0.0) == [] and len(pings) == 1
    # Unvalidated: 3 x 1200 bytes (more than the minimum window) go, in order; the rest
    # waits for the PING's acknowledgement.
    assert p.route([FULL, FULL, FULL], 0.001) == [(FULL, B), (FULL, B)]
    assert p.engine_addr == A and p.addr == A
    assert p.acknowledged(pings[0] + 1) == []  # not its PING
    assert p.acknowledged(pings[0]) == [(FULL, B)]
    assert (p.addr, p.moves) == (B, 1)
    assert p.route([FULL], 0.002) == [(FULL, B)]


def test_a_spoofed_address_does_not_take_the_connection() -> None:
    p, pings = path()
    p.received(C, 40, 0.0)
    # An unvalidated address gets at most three times what came from it (RFC 9000 8.1):
    # 40 bytes buy no full datagram, however long it waits.
    assert p.route([FULL] * 5, 0.0) == []
    assert p.route([], 1.0) == []
    # The client speaks from its validated address: back there, with what waited.
    assert p.received(A, 40, 1.001) == [(FULL, A)] * 5
    assert p.acknowledged(pings[0]) == [] and p.addr == A and p.moves == 0


def test_the_window_opens_each_round_trip() -> None:
    p, _ = path()
    p.received(B, 4 * 1452, 0.0)
    # Within three times what came, a minimum window a round trip (RFC 9000 9.4).
    assert len(p.route([FULL] * 6, 0.0)) == 2
    assert len(p.received(B, 40, 0.0105)) == 2  # one round trip later
    assert len(p.route([], 1.0)) == 2  # and then no more than 3 x received


def test_every_move_is_followed() -> None:
    p, pings = path()
    for move in range(1, 31):
        new = ("10.0.0.1", 2000 + move)
        p.received(new, 1200, float(move))
        p.acknowledged(pings[-1])
        assert (p.addr, p.moves) == (new, move)
    assert len(set(pings)) == 30


def test_a_lost_ping_is_sent_again_and_a_silent_candidate_is_given_up() -> None:
    from quicfs.transport.quic.peer_path import MAX_PINGS

    p, pings = path()  # RTT 10 ms: a PING waits 50 ms at least
    p.received(B, 1200, 0.0)
    assert p.route([FULL] * 5, 0.0) == [(FULL, B)] * 2
    assert p.deadline() == 0.05
    assert p.poll(0.049) == [] and len(pings) == 1
    assert p.poll(0.05) == [] and len(pings) == 2  # the first was lost: another
    # The acknowledgement of either PING moves the connection.
    assert p.acknowledged(pings[0]) == [(FULL, B)] * 3 and p.addr == B
    # A candidate that never answers is given up after MAX_PINGS: what it held goes to
    # the validated address, and nothing waits any more.
    p.received(C, 1200, 1.0)
    p.route([FULL] * 5, 1.0)
    now = 1.0
    while p.pending:
        now += 0.05
        released = p.poll(now)
    assert len(pings) == 2 + MAX_PINGS and now == pytest.approx(1.0 + 0.05 * MAX_PINGS)
    assert released == [(FULL, B)] * 3 and p.addr == B
    assert p.route([FULL], now) == [(FULL, B)]


def test_the_ping_goes_first_in_a_datagram_of_its_own() -> None:
    """A NAT rebinds the client in the middle of a download: from its new port come ACKs
    of 40 bytes, which buy 120 (RFC 9000 8.1), never a full datagram. The PING that
    validates the port goes at once, ahead of the full datagrams the engine had made
    (held, none of them sent before it), and each PING sent again goes ahead too; once
    the client acknowledges one, all that waited follows (before: the PING rode behind
    them, or in the first of them, and never left)."""
    PING = b"p" * 29
    made = [[FULL] * 9]  # the engine's datagrams, made after the ACK opened its window
    pings: list[int] = []

    def ping(uid: int) -> list[bytes]:
        pings.append(uid)
        # The driver has the engine send what it had first: the path holds it all.
        assert p.route(made.pop() if made else [], 0.0) == []
        return [PING]

    p = PeerPath(A, ping, lambda: 0.010)
    assert p.received(B, 40, 0.0) == [(PING, B)]
    assert p.route([FULL], 0.001) == []
    assert p.poll(0.05) == [(PING, B)] and len(pings) == 2  # the first was lost
    assert p.received(B, 40, 0.06) == []  # 160 bytes bought, 58 spent: no full datagram
    assert p.acknowledged(pings[1]) == [(FULL, B)] * 10
    assert (p.addr, p.moves) == (B, 1)
