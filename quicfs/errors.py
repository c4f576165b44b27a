"""The exception tree of quicfs.

Every error the library raises derives from :class:`QuicfsError`. Each kind says who broke
the rules (h11 style): the user (:class:`UsageError`), the server (:class:`SMBError` for a
status it answered, :class:`ProtocolError` for bytes that break MS-SMB2), or the network
(:class:`ConnectError`, :class:`ConnectionLost`). The CLI maps them to one line and an exit
code; the FUSE edge maps them to errno.

    QuicfsError
    ├── UsageError            bad URL, unknown option, unreadable credentials file
    ├── ConnectError          host unreachable, port closed, connect timeout
    │   └── CertificateError  a certificate failed a check in the QUIC handshake (final)
    ├── ConnectionLost        the transport died while requests were in flight
    ├── ProtocolError         the peer sent bytes that break the protocol
    │   ├── MalformedError    a decoder found a length/offset/count outside the buffer
    │   └── LimitExceeded     the peer sent more than a bound allows (a listing without end)
    ├── TimedOut              a soft mount's request went unanswered for timeo seconds
    ├── SecurityError         a signature or decryption check failed
    └── SMBError              the server answered with an error NTSTATUS

QuicfsError, ProtocolError, MalformedError, SecurityError and SMBError are defined in
:mod:`quicfs.smb2.errors`, beside the decoders that raise them.
"""

from __future__ import annotations

import errno as _errno

# The wire format's own errors live beside it (smb2/ imports nothing above it); the
# whole tree is named from here.
from quicfs.smb2.errors import (  # noqa: F401
    MalformedError,
    ProtocolError,
    QuicfsError,
    SecurityError,
    SMBError,
)


class UsageError(QuicfsError):
    """The caller gave something we cannot use (URL, option, credentials file)."""

    errno = _errno.EINVAL


class ConnectError(QuicfsError):
    """No transport could be opened to the server."""

    errno = _errno.EHOSTUNREACH


class CertificateError(ConnectError):
    """A certificate failed a check in the QUIC handshake: the server's failed ours (CA,
    name, pin), or the server refused ours. Final: never a reason to try TCP instead,
    where nothing would be checked (design.md, "a security decision is never undone")."""


class ConnectionLost(QuicfsError):
    """The transport closed or failed; every request waiting on it gets this."""

    errno = _errno.EIO


class StaleHandle(QuicfsError):
    """An open the server no longer has after a reconnect (it restarted, or the durable
    timeout passed): its data cannot be vouched for, so every use fails."""

    errno = _errno.ESTALE


class Interrupted(QuicfsError):
    """The program a call was made for got a signal while the call waited for a lost
    server (client/interrupt.py)."""

    errno = _errno.EINTR


class LimitExceeded(ProtocolError):
    """The peer sent more than a bound of ours allows (a directory listing that never
    ends): the call fails rather than memory growing without end."""

    errno = _errno.ENOMEM


class TimedOut(QuicfsError):
    """A soft mount's request that the server did not finish within ``timeo`` seconds
    (no answer, or STATUS_PENDING without end)."""

    errno = _errno.EIO

