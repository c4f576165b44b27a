"""The probe's report as people read it: a block per transport, the SMB server once if
both transports reach the same one, and the verdict last (docs/probe.md has an example).
Every value from the server is printed through :func:`shown`: a name in a certificate
cannot drive the terminal or fake a line."""

from __future__ import annotations

from dataclasses import replace

from quicfs.probe.model import ProbeReport, SmbFacts, TLSFacts, TransportReport

WIDTH = 20


def shown(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _row(label: str, value: str, indent: int = 2) -> str:
    return f"{' ' * indent}{label:<{WIDTH - indent + 2}} {value}".rstrip()


def _size(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _when(iso: str) -> str:
    return iso.replace("T", " ")[:16] + " UTC"


def _list(items: list[str], empty: str = "none") -> str:
    return ", ".join(shown(i) for i in items) or empty


def _headline(side: TransportReport) -> str:
    name = f"{side.transport.upper()} {side.peer}"
    if not side.probed:
        return f"{name}: not probed (transport=)"
    parts = ["ready" if side.ready else "not ready"]
    if side.connect_ms is not None:
        parts.append(f"connected in {side.connect_ms:g} ms")
    if side.rtt_ms is not None:
        parts.append(f"RTT {side.rtt_ms:g} ms")
    line = f"{name}: {', '.join(parts)}"
    if side.problem:
        line += f"\n{_row('why', shown(side.problem))}"
    return line


def _tls_lines(tls: TLSFacts) -> list[str]:
    lines = [_row("TLS", ", ".join(filter(None, [
        tls.version, tls.cipher, f"ALPN {shown(tls.alpn)}" if tls.alpn else "no ALPN agreed"])))]
    for i, cert in enumerate(tls.chain):
        label = "certificate" if len(tls.chain) == 1 else f"certificate {i + 1}"
        left = (f"{cert.days_left} days left" if cert.days_left >= 0
                else f"expired {-cert.days_left} days ago")
        lines += [
            _row(label, shown(cert.subject)),
            _row("names", _list(cert.names), 4),
            _row("issuer", shown(cert.issuer) + (" (self-signed)" if cert.self_signed
                                                 else ""), 4),
            _row("valid", f"{_when(cert.not_before)} to {_when(cert.not_after)} ({left})", 4),
            _row("key", f"{cert.key}, {cert.signature}", 4),
            _row("fingerprint", cert.fingerprint, 4),
        ]
    check = tls.verification
    if check is not None:
        where = f"against {shown(check.against)}, for {shown(check.name)}"
        lines.append(_row("verified", f"yes, {where}" if check.ok
                          else f"no, {where}: {shown(check.problem or '')}"))
        if check.pin_matches is not None:
            lines.append(_row("pinned", "matches fingerprint=" if check.pin_matches
                              else "does NOT match fingerprint="))
    if not tls.client_certificate_requested:
        asked = "not asked for"
    else:
        named = (f"names {len(tls.client_certificate_authorities)} CA(s)"
                 if tls.client_certificate_authorities else "names no CA")
        sent = (f"sent {tls.client_certificate_sent}" if tls.client_certificate_sent
                else "none sent (cert=, key=)")
        asked = f"asked for ({named}); {sent}"
    lines.append(_row("client certificate", asked))
    lines += [_row("", shown(ca), 4) for ca in tls.client_certificate_authorities]
    if tls.session_tickets:
        tickets = "yes" + (f", valid {tls.ticket_lifetime} s" if tls.ticket_lifetime
                           else "")
        if tls.resumption is not None:
            tickets += "; resumption " + ("accepted" if tls.resumption else "refused")
    else:
        tickets = "none sent"
    lines.append(_row("session tickets", tickets))
    return lines


def _comparable(smb: SmbFacts) -> SmbFacts:
    return replace(smb, transport_security=None, negotiate_ms=0.0, accepts=None,
                   clock_skew=None)


def _smb_lines(title: str, smb: SmbFacts, quic: SmbFacts | None) -> list[str]:
    acc = smb.accepts

    def also(items: list[str] | None) -> str:
        return f" (accepts {_list(items)})" if items else ""

    signing = f"{smb.signing}, {'required' if smb.signing_required else 'not required'}"
    lines = [
        f"{title}: server {smb.server_guid}",
        _row("dialect", smb.dialect + also(acc.dialects if acc else None)),
        _row("signing", signing + also(acc.signing if acc else None)),
        _row("encryption", (smb.cipher or "none") + also(acc.ciphers if acc else None)),
        _row("compression", _list(smb.compression)),
    ]
    if quic is not None and quic.transport_security is not None:
        lines.append(_row("transport security", "over QUIC: " + (
            "accepted: SMB encryption is left to QUIC (signing stays)"
            if quic.transport_security
            else "not accepted: SMB encryption stays on top of QUIC's")))
    lines += [
        _row("capabilities", _list(smb.capabilities)),
        _row("max sizes", f"read {_size(smb.max_read_size)}, write "
                          f"{_size(smb.max_write_size)}, transact "
                          f"{_size(smb.max_transact_size)}"),
        _row("POSIX extensions", "yes" if smb.posix_extensions else "no"),
        _row("authentication", _list(smb.authentication, "not said")),
    ]
    if smb.clock_skew is not None:
        skew = smb.clock_skew
        lines.append(_row("server clock", "same as ours" if abs(skew) < 1 else
                          f"{abs(skew):g} s {'ahead of' if skew > 0 else 'behind'} ours"))
    if acc is not None:
        how = f"one NEGOTIATE each, over {acc.over.upper()}"
        if acc.unknown:
            how += f"; not settled: {_list(acc.unknown)}"
        lines.append(_row("accepts", how))
    return lines


def render_text(report: ProbeReport) -> str:
    sides = [side for side in (report.quic, report.tcp) if side.probed]
    head = f"quicfs probe {shown(report.host)}: " + ", ".join(
        f"{side.transport.upper()} {side.peer}" for side in sides)
    lines = [head]
    for side in sides:
        lines += ["", _headline(side)]
        if side.quic_versions is not None:
            lines.append(_row("QUIC versions", _list(side.quic_versions)))
        if side.tls is not None:
            lines += _tls_lines(side.tls)
    quic_smb, tcp_smb = report.quic.smb, report.tcp.smb
    if quic_smb and tcp_smb and _comparable(quic_smb) == _comparable(tcp_smb):
        merged = tcp_smb if tcp_smb.accepts else quic_smb
        lines += ["", *_smb_lines("SMB over QUIC and TCP", merged, quic_smb)]
    else:
        if quic_smb:
            lines += ["", *_smb_lines("SMB over QUIC", quic_smb, quic_smb)]
        if tcp_smb:
            lines += ["", *_smb_lines("SMB over TCP", tcp_smb, None)]
    lines += ["", f"verdict: {shown(report.verdict)}"]
    return "\n".join(lines)
