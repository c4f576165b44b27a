"""The probe: QUIC and TCP asked at once, a NEGOTIATE over each, what the server accepts
besides, and the verdict (docs/probe.md).

Above the transport and the wire format, as the CLI is: the QUIC side is
transport/quic/inspect.py (handshake, certificates, tickets, versions), TCP is
transport/tcp.py, and SMB is a NEGOTIATE of its own (probe/smb.py), never a session.
"""

from __future__ import annotations

import trio

from quicfs.errors import CertificateError, QuicfsError
from quicfs.options import Options
from quicfs.probe.certs import certificate_facts
from quicfs.probe.der import distinguished_name
from quicfs.probe.model import (
    EXIT_BOTH,
    EXIT_NEITHER,
    EXIT_QUIC_ONLY,
    EXIT_TCP_ONLY,
    ProbeReport,
    TLSFacts,
    TransportReport,
    VerificationFacts,
)
from quicfs.probe.smb import Offer, accepted, facts, negotiate
from quicfs.smb2.negotiate import NegotiateResponse
from quicfs.transport.base import MessageTransport
from quicfs.transport.connect import QUIC_PORT, endpoints
from quicfs.transport.quic.inspect import (
    QuicInspection,
    QuicInspector,
    ticket_lifetime,
    verify_chain,
    version_name,
)
from quicfs.transport.quic.tls import QuicTLSOptions
from quicfs.transport.tcp import DEFAULT_PORT as TCP_PORT
from quicfs.transport.tcp import open_tcp

#: MS-SMB2 3.2.5.2: a client disconnects below this MaxRead/Write/TransactSize.
MIN_IO_SIZE = 65536
#: How long QUIC waits for TCP's connect before it starts (:func:`probe`).
TCP_FIRST = 0.05


def peer_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def failure_kind(message: str, error: BaseException | None = None) -> str:
    """The kind of a transport's failure, from the one line that tells it."""
    low = message.lower()
    if isinstance(error, CertificateError) and "client certificate" in low:
        return "client-certificate"
    for words, kind in ((("cannot resolve",), "resolve"), (("refused alpn",), "alpn"),
                        (("no quic answer", "no tcp answer"), "no-answer"),
                        (("refused",), "refused"), (("unreachable",), "unreachable"),
                        (("handshake",), "tls")):
        if any(w in low for w in words):
            return kind
    return "error"


async def probe(host: str, url_port: int | None, opts: Options) -> ProbeReport:
    """Probe ``host`` over QUIC and TCP at once (``transport=`` may name one), as
    ``quicfs probe`` does; ``url_port`` is the port given with the host, which is TCP's
    unless ``transport=quic`` (transport/connect.py)."""
    ep = endpoints(host, url_port, opts)
    want_quic = opts.transport in ("auto", "quic")
    want_tcp = opts.transport in ("auto", "tcp")
    report = ProbeReport(host=host,
                         quic=TransportReport("quic", peer_label(host, ep.quic_port),
                                              probed=want_quic),
                         tcp=TransportReport("tcp", peer_label(host, ep.tcp_port),
                                             probed=want_tcp))
    tls = QuicTLSOptions(cafile=opts.cafile, fingerprint=opts.fingerprint,
                         insecure=opts.insecure, cert=opts.cert, key=opts.key)
    tls.pinned_sha256()  # a malformed pin is a usage error, before anything is sent
    inspector = QuicInspector(host, ep.quic_port, tls=tls, within=opts.connect_timeout,
                              qlog_dir=opts.qlog) if want_quic else None
    answers: dict[str, NegotiateResponse] = {}
    tcp_connected = trio.Event()
    if not want_tcp:
        tcp_connected.set()
    async with trio.open_nursery() as drivers:  # the QUIC connections' workers
        async with trio.open_nursery() as both:
            if want_tcp:
                both.start_soon(_tcp, host, ep.tcp_port, report.tcp, opts, answers,
                                tcp_connected)
            if inspector is not None:

                async def quic() -> None:
                    # The QUIC handshake's first flight costs the CPU some milliseconds,
                    # during which TCP's connect would be timed late: TCP goes first,
                    # for at most TCP_FIRST.
                    with trio.move_on_after(TCP_FIRST):
                        await tcp_connected.wait()
                    await _quic(inspector, report.quic, opts, drivers, answers)

                both.start_soon(quic)
        over = "tcp" if "tcp" in answers else "quic" if "quic" in answers else None
        if over is not None:

            async def opener() -> MessageTransport:
                if over == "tcp":
                    return await open_tcp(host, ep.tcp_port, within=opts.connect_timeout)
                assert inspector is not None
                return await inspector.open(drivers)

            side = report.tcp if over == "tcp" else report.quic
            assert side.smb is not None
            side.smb.accepts = await accepted(opener, answers[over], server_name=host,
                                              quic=over == "quic",
                                              within=opts.connect_timeout, over=over)
        drivers.cancel_scope.cancel()
    judge(report, opts, ep.quic_port, ep.tcp_port)
    return report


async def _tcp(host: str, port: int, report: TransportReport, opts: Options,
               answers: dict[str, NegotiateResponse], connected: trio.Event) -> None:
    started = trio.current_time()
    try:
        transport = await open_tcp(host, port, within=opts.connect_timeout)
    except QuicfsError as exc:
        report.problem, report.failure = str(exc), failure_kind(str(exc), exc)
        return
    finally:
        connected.set()
    report.connected = True
    report.connect_ms = _ms(trio.current_time() - started)
    try:
        await _negotiate(transport, report, host, opts, answers)
    finally:
        with trio.CancelScope(shield=True):
            await _close(transport)


async def _quic(inspector: QuicInspector, report: TransportReport, opts: Options,
                drivers: trio.Nursery, answers: dict[str, NegotiateResponse]) -> None:
    seen = await inspector.inspect(drivers)
    if seen.versions.answered:
        report.quic_versions = [version_name(v) for v in seen.versions.versions]
    report.tls = _tls_facts(seen, inspector, opts)
    if seen.error is not None or seen.transport is None:
        message = str(seen.error)
        report.problem, report.failure = message, failure_kind(message, seen.error)
        return
    report.connected = True
    report.connect_ms = _ms(seen.connect_time or 0.0)
    try:
        await _negotiate(seen.transport, report, inspector.host, opts, answers)
    finally:
        with trio.CancelScope(shield=True):
            await _close(seen.transport)
    if seen.tickets:
        report.tls.session_tickets = True
        report.tls.ticket_lifetime = ticket_lifetime(seen.tickets[-1])
        report.tls.resumption = await inspector.resume(seen.tickets[-1], drivers)


async def _negotiate(transport: MessageTransport, report: TransportReport, host: str,
                     opts: Options, answers: dict[str, NegotiateResponse]) -> None:
    quic = report.transport == "quic"
    started = trio.current_time()
    try:
        resp = await negotiate(transport, Offer(quic=quic), host, opts.connect_timeout)
    except (QuicfsError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        report.problem = f"{report.peer} connected, but SMB NEGOTIATE failed: {exc}"
        report.failure = "smb"
        return
    report.smb = facts(resp, quic=quic, took=trio.current_time() - started)
    stats = getattr(transport, "stats", None)
    rtt = stats().get("rtt_ms") if stats is not None else None
    report.rtt_ms = round(rtt, 2) if rtt else None
    answers[report.transport] = resp


async def _close(transport: MessageTransport) -> None:
    try:
        await transport.aclose()
    except (QuicfsError, OSError, trio.BrokenResourceError):
        pass


def _tls_facts(seen: QuicInspection, inspector: QuicInspector, opts: Options
               ) -> TLSFacts | None:
    hs = seen.facts
    if hs is None or hs.cipher is None:
        return None  # no ServerHello: nothing of TLS to tell
    chain = [certificate_facts(der) for der in hs.chain]
    verification = None
    if hs.chain:
        checked = verify_chain(hs.chain, inspector.name, opts.cafile)
        pin = inspector.tls.pinned_sha256()
        verification = VerificationFacts(
            against=checked.store, name=checked.name, ok=checked.problem is None,
            problem=checked.problem, issuer_trusted=checked.trusted,
            pin_matches=None if pin is None else chain[0].fingerprint == f"sha256:{pin}")
    return TLSFacts(
        version="TLS 1.3", cipher=hs.cipher, alpn=seen.alpn, chain=chain,
        verification=verification,
        client_certificate_requested=hs.certificate_requested,
        client_certificate_authorities=[distinguished_name(d)
                                        for d in hs.certificate_authorities],
        client_certificate_sent=opts.cert if hs.certificate_requested else None,
        session_tickets=False, ticket_lifetime=None, resumption=None)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# -- the verdict
def _smb_problem(report: TransportReport) -> str | None:
    smb = report.smb
    if smb is None:
        return None
    if smb.dialect != "3.1.1":
        return (f"{report.peer} offers SMB {smb.dialect} at best; quicfs speaks 3.1.1 "
                "only")
    for what, size in (("MaxReadSize", smb.max_read_size),
                       ("MaxWriteSize", smb.max_write_size),
                       ("MaxTransactSize", smb.max_transact_size)):
        if size < MIN_IO_SIZE:
            return f"{report.peer} offers {what} {size}, below the {MIN_IO_SIZE} bytes " \
                   "MS-SMB2 3.2.5.2 asks for"
    return None


def _certificate_problem(report: TransportReport, opts: Options) -> tuple[str | None, bool]:
    """Why the server's certificate keeps a mount from working, and whether a mount needs
    to pin it (no CA vouches for it and the user named none)."""
    tls = report.tls
    check = tls.verification if tls is not None else None
    if check is None or opts.insecure:
        return None, False
    where = f"certificate of {report.peer}"
    if check.problem is not None and check.problem.startswith(("has expired",
                                                              "is not yet valid")):
        # Never ready, even pinned (a pin skips the dates): renewing it is the fix.
        return f"{where} {check.problem}", False
    if check.pin_matches is not None:
        if check.pin_matches:
            return None, True
        return f"{where} does not match the pinned fingerprint (it is " \
               f"{tls.chain[0].fingerprint})", False  # type: ignore[union-attr]
    if check.ok:
        return None, False
    if opts.cafile or check.issuer_trusted:
        return f"{where} {check.problem}", False
    return None, True  # self-signed or an unknown CA: pin it


def judge(report: ProbeReport, opts: Options, quic_port: int, tcp_port: int) -> None:
    """Which transports are ready, the verdict line, the exit code."""
    quic, tcp = report.quic, report.tcp
    for side in (quic, tcp):
        if side.connected and side.smb is not None and side.problem is None:
            side.problem = _smb_problem(side)
            side.failure = "smb" if side.problem else None
    pin = False
    if quic.connected and quic.problem is None:
        quic.problem, pin = _certificate_problem(quic, opts)
        quic.failure = "certificate" if quic.problem else None
    for side in (quic, tcp):
        side.ready = side.connected and side.smb is not None and side.problem is None
    qopts = ["transport=quic"]
    if quic.ready:
        if quic_port != QUIC_PORT:
            qopts.append(f"quic_port={quic_port}")
        if opts.insecure:
            qopts.append("insecure")
        elif pin:
            qopts.append(f"fingerprint={quic.tls.chain[0].fingerprint}")  # type: ignore[union-attr]
        elif opts.cafile:
            qopts.append(f"cafile={opts.cafile}")
        if opts.cert and opts.key:
            qopts += [f"cert={opts.cert}", f"key={opts.key}"]
        report.quic_options = ",".join(qopts)
    topts = "transport=tcp" + (f",port={tcp_port}" if tcp_port != TCP_PORT else "")
    asks = quic.ready and quic.tls is not None and quic.tls.client_certificate_requested \
        and not opts.cert
    hint = " (it asks for a client certificate: add cert= and key= if it admits only " \
           "known clients)" if asks else ""
    if quic.ready and tcp.ready:
        report.verdict = f"QUIC ready: mount with -o {report.quic_options}{hint}; TCP ready " \
                         f"too (-o {topts})"
    elif quic.ready:
        report.verdict = f"QUIC ready: mount with -o {report.quic_options}{hint}" + (
            f"; TCP not: {tcp.problem}" if tcp.probed else "")
    elif tcp.ready:
        report.verdict = f"TCP ready: mount with -o {topts}" + (
            f"; QUIC not: {quic.problem}" if quic.probed else "")
    else:
        report.verdict = "not ready: " + "; ".join(
            f"{side.transport.upper()}: {side.problem}" for side in (quic, tcp)
            if side.probed)
    if quic.probed and tcp.probed:
        report.exit_code = {(True, True): EXIT_BOTH, (False, True): EXIT_TCP_ONLY,
                            (True, False): EXIT_QUIC_ONLY,
                            (False, False): EXIT_NEITHER}[(quic.ready, tcp.ready)]
    else:
        report.exit_code = EXIT_BOTH if quic.ready or tcp.ready else EXIT_NEITHER
