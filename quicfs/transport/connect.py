"""Choosing a transport: TCP, QUIC, or both raced as Windows does (``transport=auto``).

Ports: ``port=`` is TCP's (default 445) and ``quic_port=`` is QUIC's (default 443). A port
in the URL is the forced transport's port (``transport=quic`` or ``tcp``); with ``auto`` it
is TCP's, since that is what a cifs-style URL means, and QUIC keeps ``quic_port``.

Racing: QUIC starts first and TCP a moment later (``TCP_HEADSTART``), as Windows 11 does;
the first transport that is ready wins and the other attempt is cancelled. Both failing
gives one error naming both causes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from quicfs.errors import ConnectError, UsageError
from quicfs.options import Options
from quicfs.transport.base import MessageTransport
from quicfs.transport.tcp import DEFAULT_PORT as TCP_PORT
from quicfs.transport.tcp import open_tcp

log = logging.getLogger("quicfs.transport")

QUIC_PORT = 443
#: How long QUIC runs alone before TCP joins the race.
TCP_HEADSTART = 0.25


@dataclass(frozen=True, slots=True)
class Endpoints:
    host: str
    tcp_port: int
    quic_port: int


def endpoints(host: str, url_port: int | None, opts: Options) -> Endpoints:
    tcp_port = opts.port or TCP_PORT
    quic_port = opts.quic_port or QUIC_PORT
    if url_port is not None:
        if opts.transport == "quic":
            quic_port = opts.quic_port or url_port
        else:
            tcp_port = url_port
    return Endpoints(host, tcp_port, quic_port)


async def open_quic_transport(ep: Endpoints, opts: Options, nursery: trio.Nursery, *,
                              allow_early: bool = False) -> MessageTransport:
    # Imported here: only this path needs qh3 (design.md: only quic.py imports it).
    try:
        from quicfs.transport.quic import QuicTLSOptions, open_quic
    except ImportError as exc:  # pragma: no cover - only while QUIC is being built
        raise ConnectError(f"QUIC transport unavailable: {exc}") from None

    tls = QuicTLSOptions(cafile=opts.cafile, fingerprint=opts.fingerprint,
                         insecure=opts.insecure, cert=opts.cert, key=opts.key)
    return await open_quic(ep.host, ep.quic_port, nursery=nursery, server_name=ep.host,
                           tls=tls, within=opts.connect_timeout, qlog_dir=opts.qlog,
                           max_datagram_size=opts.max_datagram_size,
                           allow_early=allow_early)


async def open_transport(host: str, url_port: int | None, opts: Options,
                         nursery: trio.Nursery, *, allow_early: bool = True
                         ) -> MessageTransport:
    """Open the transport ``opts.transport`` names; QUIC's worker task lives in
    ``nursery`` (the caller's, which outlives the transport). ``allow_early``: the
    first message may go in QUIC 0-RTT."""
    ep = endpoints(host, url_port, opts)
    if opts.transport == "tcp":
        return await open_tcp(host, ep.tcp_port, within=opts.connect_timeout)
    if opts.transport == "quic":
        return await open_quic_transport(ep, opts, nursery, allow_early=allow_early)
    if opts.transport == "auto":
        return await race(ep, opts, nursery)
    raise UsageError(f"unknown transport '{opts.transport}'")


async def race(ep: Endpoints, opts: Options, outer: trio.Nursery) -> MessageTransport:
    """Happy-eyeballs between QUIC and TCP: first ready wins, the loser is cancelled."""
    winner: list[MessageTransport] = []
    errors: dict[str, BaseException] = {}
    quic_failed = trio.Event()

    async with trio.open_nursery() as nursery:

        async def attempt(kind: str) -> None:
            try:
                if kind == "tcp":
                    with trio.move_on_after(TCP_HEADSTART):
                        await quic_failed.wait()  # no need to wait if QUIC already failed
                    transport = await open_tcp(ep.host, ep.tcp_port,
                                               within=opts.connect_timeout)
                else:
                    transport = await open_quic_transport(ep, opts, outer)
            except (ConnectError, OSError) as exc:
                errors[kind] = exc
                if kind == "quic":
                    quic_failed.set()
                return
            if winner:
                # Both made it in the same instant: keep the first, close this one.
                with trio.CancelScope(shield=True):
                    await transport.aclose()
                return
            winner.append(transport)
            nursery.cancel_scope.cancel()

        nursery.start_soon(attempt, "quic")
        nursery.start_soon(attempt, "tcp")
    if winner:
        log.info("transport=auto chose %s to %s", winner[0].kind, winner[0].peer)
        return winner[0]
    quic = errors.get("quic")
    tcp = errors.get("tcp")
    raise ConnectError(f"cannot reach {ep.host} over QUIC ({quic}) nor TCP ({tcp})")
