"""quicfs: SMB 3.1.1 over QUIC (and TCP) for Linux."""

from quicfs.errors import (
    ConnectError,
    ConnectionLost,
    MalformedError,
    ProtocolError,
    QuicfsError,
    SecurityError,
    SMBError,
    UsageError,
)

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "MalformedError",
    "ProtocolError",
    "QuicfsError",
    "SMBError",
    "SecurityError",
    "UsageError",
]
