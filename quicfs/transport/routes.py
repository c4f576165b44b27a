"""Is a peer on one of our links? Read from the kernel's main routing table.

``cc=auto`` (engine.py) gives qh3's CUBIC to a peer on a directly attached link -- a
LAN, where round trips are short, loss is rare and qh3's CPU per packet (a fifth of
aioquic's) bounds a gigabit transfer -- and our BBR to a routed one, where random loss
would cut a loss-based controller to a fraction of the link. On-link means the
longest matching route has no gateway (RTF_GATEWAY unset): the peer answers ARP or
neighbour discovery on our wire.

Linux keeps the main table in /proc/net/route (IPv4) and /proc/net/ipv6_route (IPv6,
local routes included). Policy routing (other tables) is not read: a peer whose route is
unknown counts as routed, the safe side for loss. The parsers are pure; :func:`on_link`
reads the files at most once a second, so a flood of new connections costs no file
reads.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

#: linux/route.h
RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200

#: Seconds a reading of the tables is used before it is read again.
REREAD_AFTER = 1.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Route:
    network: Network
    gateway: bool  # reached through a router, not on the wire


def parse_ipv4(text: str) -> list[Route]:
    """Routes of /proc/net/route: addresses and masks in hex, in host (little-endian)
    byte order."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = int(fields[1], 16).to_bytes(4, "little")
            flags = int(fields[3], 16)
            mask = int(fields[7], 16).to_bytes(4, "little")
            network = ipaddress.IPv4Network((dest, str(ipaddress.IPv4Address(mask))))
        except ValueError:
            continue
        if flags & RTF_UP and not flags & RTF_REJECT:
            routes.append(Route(network, bool(flags & RTF_GATEWAY)))
    return routes


def parse_ipv6(text: str) -> list[Route]:
    """Routes of /proc/net/ipv6_route: destination, prefix length, source, its length,
    next hop, metric, refcount, use, flags, device."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            network = ipaddress.IPv6Network((dest, int(fields[1], 16)))
            flags = int(fields[8], 16)
        except ValueError:
            continue
        if flags & RTF_UP and not flags & RTF_REJECT:
            routes.append(Route(network, bool(flags & RTF_GATEWAY)))
    return routes


def is_on_link(ip: Address, routes: list[Route]) -> bool:
    """Whether the longest route matching ``ip`` reaches it without a gateway."""
    best: Route | None = None
    for route in routes:
        if route.network.version == ip.version and ip in route.network:
            if best is None or route.network.prefixlen > best.network.prefixlen:
                best = route
    return best is not None and not best.gateway


class _Table:
    """The kernel's routes, read again when older than REREAD_AFTER."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._read_at = -REREAD_AFTER

    def routes(self) -> list[Route]:
        now = time.monotonic()
        if now - self._read_at >= REREAD_AFTER:
            self._routes = _read("/proc/net/route", parse_ipv4) + _read(
                "/proc/net/ipv6_route", parse_ipv6)
            self._read_at = now
        return self._routes


def _read(path: str, parse) -> list[Route]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse(f.read())
    except OSError:  # no /proc, or no IPv6: nothing known, so routed
        return []


_table = _Table()


def on_link(ip: Address) -> bool:
    """Whether ``ip`` is on a link of this host (its network namespace's tables)."""
    return is_on_link(ip, _table.routes())


__all__ = ["Route", "is_on_link", "on_link", "parse_ipv4", "parse_ipv6"]
