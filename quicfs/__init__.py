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
    "connect",
]


def __getattr__(name: str) -> object:
    # Lazy, so that importing the pure layers (quicfs.smb2) does not pull in trio.
    if name == "connect":
        from quicfs.client.share import connect

        return connect
    raise AttributeError(name)
