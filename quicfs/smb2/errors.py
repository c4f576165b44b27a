"""The errors of the wire format: what a decoder, a signature check or a server's status
can raise. They live here so that ``quicfs.smb2`` imports nothing above it; the rest of
the tree, and its map, is in :mod:`quicfs.errors`."""

from __future__ import annotations

import errno as _errno

from quicfs.smb2.status import errno_for_status, status_name


class QuicfsError(Exception):
    """Base class of every error quicfs raises on purpose."""

    #: errno the FUSE edge returns for this error.
    errno: int = _errno.EIO


class ProtocolError(QuicfsError):
    """The remote peer broke MS-SMB2 (or the framing under it)."""


class MalformedError(ProtocolError):
    """A decoder found bytes that do not fit the structure (bad length, offset, count)."""


class SecurityError(QuicfsError):
    """A message failed its signature check or could not be decrypted: never used as data."""

    errno = _errno.EIO


class SMBError(QuicfsError):
    """The server answered a request with an error status (MS-ERREF 2.3)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.errno = errno_for_status(status)
        self.name = status_name(status)
        super().__init__(message or self.name)

    def __repr__(self) -> str:
        return f"SMBError(status={self.name})"
