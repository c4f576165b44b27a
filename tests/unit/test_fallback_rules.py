"""fallback= and when transport=auto may use TCP (transport/connect.py): exact answers."""

from __future__ import annotations

import pytest

from quicfs.errors import UsageError
from quicfs.options import parse_options
from quicfs.transport.connect import tcp_refused, verification_asked

PIN = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, refused",
    [
        ("", None),
        ("seal", None),
        ("fallback=tcp", None),
        ("fallback=none", "fallback=none"),
        (f"fingerprint={PIN}", "fingerprint= was given; add seal or fallback=tcp to allow it"),
        ("cafile=/ca.pem", "cafile= was given; add seal or fallback=tcp to allow it"),
        ("cert=/c.pem,key=/k.pem", "cert= was given; add seal or fallback=tcp to allow it"),
        (f"fingerprint={PIN},seal", None),
        (f"fingerprint={PIN},fallback=tcp", None),
        (f"fingerprint={PIN},seal,fallback=none", "fallback=none"),
    ],
)
def test_when_tcp_is_refused(text, refused):
    assert tcp_refused(parse_options(text)) == refused


def test_verification_asked():
    assert verification_asked(parse_options("")) is None
    assert verification_asked(parse_options("seal")) is None
    assert verification_asked(parse_options(f"cafile=/x,fingerprint={PIN}")) == "fingerprint"


@pytest.mark.parametrize(
    "text, message",
    [
        ("fallback=udp", "bad value for option fallback: 'udp' (expected tcp or none)"),
        ("fallback", "option fallback needs a value (fallback=...)"),
        ("transport=quic,fallback=tcp",
         "option fallback= applies to transport=auto only, not transport=quic"),
        ("fallback=none,transport=tcp",
         "option fallback= applies to transport=auto only, not transport=tcp"),
    ],
)
def test_bad_fallback(text, message):
    with pytest.raises(UsageError) as info:
        parse_options(text)
    assert str(info.value) == message
