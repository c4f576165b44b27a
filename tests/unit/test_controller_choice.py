# ruff: noqa: E501  (the kernel's table lines are long)
"""cc=auto picks qh3's CUBIC for a peer on loopback or on one of our links and our BBR
for a routed one; a named controller is taken as named (transport/quic/engine.py,
transport/routes.py)."""

from __future__ import annotations

import ipaddress

import pytest

from quicfs.transport import routes
from quicfs.transport.quic import engine
from quicfs.transport.quic.engine import controller_for
from quicfs.transport.routes import Route, is_on_link, parse_ipv4, parse_ipv6

# This container's tables, as /proc shows them: a default route through 192.0.2.1, the
# on-link 192.0.2.0/24; IPv6 fd00::/64 on-link, a default through fd00::1, local routes
# and the kernel's reject route for the rest.
IPV4 = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000A8C0\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IPV6 = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""
TABLE = parse_ipv4(IPV4) + parse_ipv6(IPV6)


def test_parsers_read_the_kernel_format():
    assert parse_ipv4(IPV4) == [  # the route that is not up (flags 0) is left out
        Route(ipaddress.ip_network("0.0.0.0/0"), gateway=True),
        Route(ipaddress.ip_network("192.0.2.0/24"), gateway=False),
    ]
    assert parse_ipv6(IPV6) == [  # the reject route is left out
        Route(ipaddress.ip_network("fd00::/64"), gateway=False),
        Route(ipaddress.ip_network("fe80::/64"), gateway=False),
        Route(ipaddress.ip_network("::/0"), gateway=True),
        Route(ipaddress.ip_network("::1/128"), gateway=False),
        Route(ipaddress.ip_network("fd00::2/128"), gateway=False),
    ]
    assert parse_ipv4("header\ngarbage line\neth0 zz 0 1 0 0 0 0\n") == []


@pytest.mark.parametrize("address, on", [
    ("192.0.2.77", True),      # the /24 beats the default route
    ("198.51.100.1", False),   # only the default route: through the gateway
    ("192.168.1.1", False),    # its on-link route is down
    ("fd00::99", True),
    ("2001:db8::1", False),
])
def test_longest_match_decides(address, on):
    assert is_on_link(ipaddress.ip_address(address), TABLE) is on
    assert is_on_link(ipaddress.ip_address(address), []) is False  # unknown: routed


@pytest.mark.parametrize("peer, auto", [
    (("127.0.0.1", 443), "cubic"),
    (("127.8.9.10", 443), "cubic"),
    (("::1", 443, 0, 0), "cubic"),
    (("::ffff:127.0.0.1", 443, 0, 0), "cubic"),
    (("fe80::1%eth0", 443, 0, 2), "cubic"),
    (("192.0.2.7", 443), "cubic"),
    (("::ffff:192.0.2.7", 443, 0, 0), "cubic"),
    (("fd00::5", 443, 0, 0), "cubic"),
    (("10.0.0.1", 443), "bbr"),
    (("203.0.113.9", 443), "bbr"),
    (("2001:db8::1", 443, 0, 0), "bbr"),
    (None, "bbr"),
    (("not an address", 443), "bbr"),
])
def test_auto_by_route_to_peer(monkeypatch, peer, auto):
    monkeypatch.setattr(engine, "on_link", lambda ip: is_on_link(ip, TABLE))
    assert controller_for(None, peer) == auto
    assert controller_for("auto", peer) == auto
    assert controller_for("cubic", peer) == "cubic"
    assert controller_for("bbr", peer) == "bbr"


def test_this_hosts_tables_are_read():
    # Whatever this machine's routes are, some are read, and a documentation address
    # (RFC 5737) is reached through a gateway, if at all.
    table = routes._table.routes()
    assert table, "no route read from /proc/net/route or /proc/net/ipv6_route"
    assert not routes.on_link(ipaddress.ip_address("203.0.113.9"))
