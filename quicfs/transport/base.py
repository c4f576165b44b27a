"""MessageTransport: what the SMB client needs from a transport — send and receive whole
SMB2 messages. TCP and QUIC both provide it (MS-SMB2 2.1: the same 4-byte framing on both)."""

from __future__ import annotations

from typing import Protocol


class MessageTransport(Protocol):
    #: "tcp" or "quic": the client offers the transport capabilities context over QUIC only.
    kind: str
    #: "host:port" of the peer, for messages and stats.
    peer: str
    #: trio time the peer last sent bytes.
    last_received: float
    #: Requests outstanding and nothing heard for this long: the connection is dead.
    dead_after: float

    def heard(self) -> float:
        """trio time the peer last showed it is alive (bytes, or transport ACKs)."""
        ...

    def probe(self) -> None:
        """Ask the peer for a sign of life, if the transport can."""
        ...

    async def send_message(self, message: bytes | bytearray | memoryview) -> None:
        """Send one whole SMB2 message (or compound chain, or transform)."""

    def try_send_message(self, message: bytes | bytearray | memoryview) -> bool:
        """Send one message now if that needs no wait; False, with nothing sent, if not."""
        ...

    async def receive_message(self) -> bytearray:
        """The next whole message; raises ConnectionLost when the peer has gone."""

    async def aclose(self) -> None:
        """Close the transport; pending receives end with ConnectionLost."""
