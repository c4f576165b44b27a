"""cc=auto picks qh3's CUBIC for a loopback peer and our BBR for any other; a named
controller is taken as named (transport/engine.py)."""

from __future__ import annotations

import pytest

from quicfs.transport.engine import controller_for


@pytest.mark.parametrize("peer, auto", [
    (("127.0.0.1", 443), "cubic"),
    (("127.8.9.10", 443), "cubic"),
    (("::1", 443, 0, 0), "cubic"),
    (("::ffff:127.0.0.1", 443, 0, 0), "cubic"),
    (("10.0.0.1", 443), "bbr"),
    (("192.0.2.7", 443), "bbr"),
    (("2001:db8::1", 443, 0, 0), "bbr"),
    (("fe80::1%eth0", 443, 0, 2), "bbr"),
    (None, "bbr"),
])
def test_auto_by_peer(peer, auto):
    assert controller_for(None, peer) == auto
    assert controller_for("auto", peer) == auto
    assert controller_for("cubic", peer) == "cubic"
    assert controller_for("bbr", peer) == "bbr"
