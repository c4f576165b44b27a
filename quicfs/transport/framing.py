"""Direct TCP framing (MS-SMB2 2.1): one zero byte and a 24-bit big-endian length before
each message. It lives once, here, above the byte streams of TCP and QUIC.

Theory of operation: :class:`FramedStream` wraps any ``trio.abc.Stream``. Receiving keeps
one growing buffer and cuts whole messages out of it; sending writes header and message in
one call. A send that is cancelled or fails half-way leaves the peer's deframer in an unknown
state, so the stream is then marked broken and refuses to send more.
"""

from __future__ import annotations

import trio

from quicfs.errors import ConnectionLost, ProtocolError

#: The 24-bit length field allows up to 16 MiB - 1.
MAX_MESSAGE = 16 * 1024 * 1024 - 1
#: The largest message we accept: 8 MiB of READ data (the most any server offers and the
#: most we ask for) plus headers, with room to spare. A bigger claim is a hostile peer.
MAX_RECEIVE = 9 * 1024 * 1024
_RECEIVE_CHUNK = 256 * 1024
_JOIN_LIMIT = 64 * 1024


def frame_header(length: int) -> bytes:
    if length > MAX_MESSAGE:
        raise ValueError(f"SMB2 message of {length} bytes exceeds the 24-bit frame length")
    return length.to_bytes(4, "big")


class FramedStream:
    """A MessageTransport over a byte stream."""

    #: Requests outstanding and nothing heard for this long: the connection is dead.
    #: Over TCP the kernel retransmits and reports a reset by itself, and a server busy
    #: with a slow request sends nothing meanwhile, so silence must last a while.
    dead_after = 10.0

    def __init__(self, stream: trio.abc.Stream, *, kind: str, peer: str) -> None:
        self._stream = stream
        self.kind = kind
        self.peer = peer
        self._buf = bytearray()
        self._broken: BaseException | None = None
        self._send_lock = trio.Lock()
        #: trio time when the peer last sent us bytes: the client's liveness watch asks
        #: this, not whole messages (one large READ response may take a while to arrive).
        self.last_received = trio.current_time()

    def heard(self) -> float:
        """trio time the peer last showed it is alive."""
        return self.last_received

    def probe(self) -> None:
        """Ask the peer for a sign of life (nothing to send over a plain stream)."""

    async def send_message(self, message: bytes | bytearray | memoryview) -> None:
        if self._broken is not None:
            raise ConnectionLost(f"connection to {self.peer} is broken") from self._broken
        async with self._send_lock:
            try:
                header = frame_header(len(message))
                if len(message) <= _JOIN_LIMIT:
                    # One call, so a small message leaves in one segment with its header.
                    await self._stream.send_all(header + bytes(message))
                else:
                    # A large one is not copied just to put four bytes before it.
                    await self._stream.send_all(header)
                    await self._stream.send_all(message)
            except BaseException as exc:
                self._broken = exc
                if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
                    raise ConnectionLost(f"connection to {self.peer} lost: {exc}") from exc
                raise

    def try_send_message(self, message: bytes | bytearray | memoryview) -> bool:
        """Send a small message now, without waiting, where the stream can take it whole
        at once (QUIC: room in the engine); False, with nothing sent, otherwise -- then
        :meth:`send_message` does it."""
        try_send = getattr(self._stream, "try_send", None)
        if (try_send is None or self._broken is not None or self._send_lock.locked()
                or len(message) > _JOIN_LIMIT):
            return False
        return bool(try_send(frame_header(len(message)) + bytes(message)))

    async def receive_message(self) -> bytearray:
        while True:
            if len(self._buf) >= 4:
                if self._buf[0] != 0:
                    raise ProtocolError(f"bad frame header {bytes(self._buf[:4]).hex()}")
                length = int.from_bytes(self._buf[1:4], "big")
                if length > MAX_RECEIVE:
                    raise ProtocolError(
                        f"{self.peer} announced a {length}-byte message; the limit is "
                        f"{MAX_RECEIVE}"
                    )
                if len(self._buf) >= 4 + length:
                    message = self._buf[4 : 4 + length]
                    del self._buf[: 4 + length]
                    return message
            try:
                data = await self._stream.receive_some(_RECEIVE_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(f"connection to {self.peer} lost: {exc}") from exc
            if not data:
                raise ConnectionLost(f"{self.peer} closed the connection")
            self.last_received = trio.current_time()
            self._buf += data

    async def aclose(self) -> None:
        self._broken = self._broken or ConnectionLost("closed")
        await self._stream.aclose()
