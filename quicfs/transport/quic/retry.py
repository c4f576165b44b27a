"""Address validation tokens for stateless Retry (RFC 9000 8.1.2, 17.2.5).

Under load the server answers an Initial with a Retry carrying a token instead of
keeping any state; a client that really is at its address sends its Initial again with
the token, and only then does the connection begin. The server keeps nothing between the
two: the token itself says what the server needs to know (the client's first
destination connection id, RFC 9000 7.3), bound by a MAC to the client's address, the
connection id the Retry gave it, and the time it was made (a short lifetime: a token is
good for one round trip, not for replay later).

    token = time (8 bytes, ms) | len | original dcid | BLAKE2s-MAC(key, ...) (16 bytes)

Pure: the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct

#: How long a Retry token is good for, in seconds: a round trip, with room to spare.
LIFETIME = 10.0
_MAC = 16


def _address(addr: object) -> bytes:
    host, port = addr[0], addr[1]  # type: ignore[index]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_pton(family, host.split("%")[0]) + struct.pack("!H", port)


class RetryTokens:
    def __init__(self, key: bytes | None = None, lifetime: float = LIFETIME) -> None:
        self._key = key or os.urandom(32)
        self.lifetime = lifetime

    def _mac(self, addr: object, stamp: bytes, odcid: bytes, retry_cid: bytes) -> bytes:
        msg = _address(addr) + stamp + bytes([len(odcid)]) + odcid + retry_cid
        # Keyed BLAKE2s is a MAC in its own right (RFC 7693 2.9), and a few times cheaper
        # than HMAC-SHA256 per token: a flood of Initials pays for one each.
        return hashlib.blake2s(msg, key=self._key, digest_size=_MAC).digest()

    def make(self, addr: object, odcid: bytes, retry_cid: bytes, now: float) -> bytes:
        """The token for a Retry to ``addr``, whose Initial was sent to ``odcid``; the
        Retry gives the client ``retry_cid`` to send to next."""
        stamp = struct.pack("!q", int(now * 1000))
        return stamp + bytes([len(odcid)]) + odcid + self._mac(addr, stamp, odcid, retry_cid)

    def check(self, addr: object, token: bytes, dcid: bytes, now: float) -> bytes | None:
        """The original destination connection id if ``token`` is one of ours, made for
        ``addr`` and a Retry that gave out ``dcid``, and still fresh; None otherwise (a
        token from elsewhere, such as a NEW_TOKEN one, is no token: 8.1.3)."""
        if len(token) < 9 + _MAC:
            return None
        stamp, n = token[:8], token[8]
        odcid, mac = token[9:9 + n], token[9 + n:]
        if len(odcid) != n or len(mac) != _MAC:
            return None
        if not hmac.compare_digest(mac, self._mac(addr, stamp, odcid, dcid)):
            return None
        age = now - struct.unpack("!q", stamp)[0] / 1000
        if not -1.0 <= age <= self.lifetime:
            return None
        return odcid


__all__ = ["LIFETIME", "RetryTokens"]
