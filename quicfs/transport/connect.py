"""Choosing a transport: TCP, QUIC, or both raced as Windows does (``transport=auto``).

Ports: ``port=`` is TCP's (default 445) and ``quic_port=`` is QUIC's (default 443). A port
in the URL is the forced transport's port (``transport=quic`` or ``tcp``); with ``auto`` it
is TCP's, since that is what a cifs-style URL means, and QUIC keeps ``quic_port``.

Racing: QUIC starts first and TCP a moment later (``TCP_HEADSTART``), as Windows 11 does;
the first transport that is ready wins and the other attempt is cancelled at once (the
race returns as soon as the winner is ready). Both failing gives one error naming both
causes.

When TCP may stand in for QUIC (``fallback=``): on TCP no certificate is checked and the
NTLM exchange goes to whoever answers, so an attacker who drops or answers UDP must not
gain by it (design.md, "on the internet").

- A certificate that fails a check (:class:`~quicfs.errors.CertificateError`) is final.
- ``fingerprint=``, ``cafile=`` or ``cert=`` say the user wants a verified server: TCP only
  with ``seal`` (SMB encryption, keyed by the user's password) or ``fallback=tcp``, and
  only once QUIC has failed (no race); else ``auto`` is QUIC alone and its error says how
  to allow TCP. ``fallback=none``: never TCP.
- A reconnect keeps the transport the first connection got (link.py), unless
  ``fallback=tcp`` was given: dropping UDP for a while must not move a mount to TCP.
- Each time ``auto`` ends on TCP is one warning line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import trio

from quicfs.errors import CertificateError, ConnectError, UsageError
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


async def open_quic_transport(ep: Endpoints, opts: Options,
                              nursery: trio.Nursery) -> MessageTransport:
    # Imported here: only this path needs qh3 (design.md: only quic/ imports it).
    try:
        from quicfs.transport.quic import QuicTLSOptions, open_quic
    except ImportError as exc:  # pragma: no cover - only while QUIC is being built
        raise ConnectError(f"QUIC transport unavailable: {exc}") from None

    tls = QuicTLSOptions(cafile=opts.cafile, fingerprint=opts.fingerprint,
                         insecure=opts.insecure, cert=opts.cert, key=opts.key)
    return await open_quic(ep.host, ep.quic_port, nursery=nursery, server_name=ep.host,
                           tls=tls, within=opts.connect_timeout, qlog_dir=opts.qlog,
                           max_datagram_size=opts.max_datagram_size, cc=opts.cc)


def verification_asked(opts: Options) -> str | None:
    """The option by which the user asked for a verified QUIC server, if any."""
    return next((name for name in ("fingerprint", "cafile", "cert") if getattr(opts, name)),
                None)


def tcp_refused(opts: Options) -> str | None:
    """Why ``transport=auto`` may not use TCP with these options; None if it may."""
    if opts.fallback == "tcp":
        return None
    if opts.fallback == "none":
        return "fallback=none"
    asked = verification_asked(opts)
    if opts.seal or asked is None:
        return None
    return f"{asked}= was given; add seal or fallback=tcp to allow it"


async def open_transport(host: str, url_port: int | None, opts: Options,
                         nursery: trio.Nursery, *,
                         keep: str | None = None) -> MessageTransport:
    """Open the transport ``opts.transport`` names; QUIC's worker task lives in
    ``nursery`` (the caller's, which outlives the transport). ``keep``: the kind a
    reconnect keeps (the first connection's), which ``auto`` then uses alone unless
    ``fallback=tcp``."""
    ep = endpoints(host, url_port, opts)
    kind = opts.transport
    if kind == "auto" and keep is not None and opts.fallback != "tcp":
        kind = keep
    if kind == "tcp":
        return await open_tcp(host, ep.tcp_port, within=opts.connect_timeout)
    if kind == "quic":
        return await open_quic_transport(ep, opts, nursery)
    if kind != "auto":
        raise UsageError(f"unknown transport '{opts.transport}'")
    refused = tcp_refused(opts)
    if refused is None:
        # Asked for a verified server, TCP is a fallback only: it starts when QUIC has
        # failed, so QUIC's verdict on the certificate is always heard first.
        headstart = math.inf if verification_asked(opts) else TCP_HEADSTART
        return await race(ep, opts, nursery, headstart=headstart)
    try:
        transport = await open_quic_transport(ep, opts, nursery)
    except CertificateError:
        raise
    except ConnectError as exc:
        raise ConnectError(f"{exc} (not trying TCP: {refused})") from None
    log.info("transport=auto chose quic to %s (TCP not tried: %s)", transport.peer, refused)
    return transport


async def race(ep: Endpoints, opts: Options, outer: trio.Nursery, *,
               headstart: float = TCP_HEADSTART) -> MessageTransport:
    """Happy-eyeballs between QUIC and TCP: first ready wins, the loser is cancelled; a
    certificate that fails a check ends the race with that error. TCP starts
    ``headstart`` seconds after QUIC, or when QUIC has failed."""
    winner: list[MessageTransport] = []
    errors: dict[str, BaseException] = {}
    quic_failed = trio.Event()
    started = trio.current_time()

    async with trio.open_nursery() as nursery:

        async def attempt(kind: str) -> None:
            try:
                if kind == "tcp":
                    with trio.move_on_after(headstart):
                        await quic_failed.wait()  # no need to wait if QUIC already failed
                    transport = await open_tcp(ep.host, ep.tcp_port,
                                               within=opts.connect_timeout)
                else:
                    transport = await open_quic_transport(ep, opts, outer)
            except CertificateError as exc:
                # Final: TCP is not tried (a TCP attempt under way is cancelled).
                errors["final"] = exc
                nursery.cancel_scope.cancel()
                return
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
    if "final" in errors:
        if winner:
            with trio.CancelScope(shield=True):
                await winner[0].aclose()
        raise errors["final"]
    quic = errors.get("quic")
    if winner and winner[0].kind == "tcp":
        why = (f"({quic})" if quic is not None
               else f"within {trio.current_time() - started:.2f} s")
        log.warning("transport=auto chose tcp to %s: QUIC did not connect %s",
                    winner[0].peer, why)
        return winner[0]
    if winner:
        log.info("transport=auto chose %s to %s", winner[0].kind, winner[0].peer)
        return winner[0]
    tcp = errors.get("tcp")
    raise ConnectError(f"cannot reach {ep.host} over QUIC ({quic}) nor TCP ({tcp})")
