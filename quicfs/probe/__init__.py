"""``quicfs probe HOST[:PORT]``: what an SMB server offers over QUIC and TCP, seen before
mounting and without logging in (docs/probe.md).

:func:`probe` asks both transports at once and gives a :class:`ProbeReport`: for each,
whether it connects and why not, its timings, over QUIC the TLS handshake and the
certificate chain checked as a mount would check it, and what the SMB server says to a
NEGOTIATE; then a verdict line and an exit code. :func:`render_text` and
:meth:`ProbeReport.to_json` present it.

It sits above the transport and the wire format, as the CLI does: the QUIC side is
``transport/quic/inspect.py``, the SMB side a NEGOTIATE of its own (``smb.py``).
"""

from __future__ import annotations

import ipaddress

from quicfs.errors import UsageError
from quicfs.probe.model import ProbeReport
from quicfs.probe.run import probe
from quicfs.probe.text import render_text
from quicfs.url import parse_authority

EXPECTED = "expected HOST[:PORT]"


def parse_target(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or a bare IPv6 address; a share URL
    (``//HOST[:PORT]/SHARE``, ``smb://``, ``\\\\HOST\\SHARE``) is taken for its server."""
    raw = text.strip()
    rest = raw
    if rest.lower().startswith("smb://"):
        rest = rest[6:]
    elif rest.startswith(("//", "\\\\")):
        rest = rest[2:].replace("\\", "/")
    rest = rest.split("/", 1)[0]
    if not rest:
        raise UsageError(f"no server in '{raw}': {EXPECTED}")
    try:
        return str(ipaddress.IPv6Address(rest)), None
    except ValueError:
        pass
    try:
        return parse_authority(rest, raw)
    except UsageError as exc:
        raise UsageError(str(exc).replace(" in URL ", " in ")) from None


__all__ = ["ProbeReport", "parse_target", "probe", "render_text"]
