"""Direct TCP framing (MS-SMB2 2.1): one zero byte and a 24-bit big-endian length before
each message. It lives once, here, above the byte streams of TCP and QUIC.

Theory of operation: :class:`FramedStream` wraps any ``trio.abc.Stream``. Receiving keeps
the chunks the stream gave, uncopied, until a whole message is there, then copies the
message out of them once; sending writes header and message in one call. A send that is
cancelled or fails half-way leaves the peer's deframer in an unknown state, so the stream
is then marked broken and refuses to send more.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

import trio

from quicfs.errors import ConnectionLost, ProtocolError

#: The 24-bit length field allows up to 16 MiB - 1.
MAX_MESSAGE = 16 * 1024 * 1024 - 1
#: The largest message we accept: 8 MiB of READ data (the most any server offers and the
#: most we ask for) plus headers, with room to spare. A bigger claim is a hostile peer.
MAX_RECEIVE = 9 * 1024 * 1024
_RECEIVE_CHUNK = 256 * 1024
#: Taken at once from a stream that gives pieces uncopied: what waits there, so one pass
#: takes a whole READ response, up to a bound on what is held here beyond one message.
_RECEIVE_PIECES = 1024 * 1024
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
        #: Received and not yet cut into messages; ``_off`` bytes of the first chunk
        #: are consumed already, ``_have`` counts the rest.
        self._chunks: deque[bytes | memoryview] = deque()
        #: A stream that hands over what it received in pieces, uncopied (QUIC's).
        self._receive_pieces = getattr(stream, "receive_pieces", None)
        self._off = 0
        self._have = 0
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
            if self._have >= 4:
                header = self._peek(4)
                if header[0] != 0:
                    raise ProtocolError(f"bad frame header {header.hex()}")
                length = int.from_bytes(header[1:4], "big")
                if length > MAX_RECEIVE:
                    raise ProtocolError(
                        f"{self.peer} announced a {length}-byte message; the limit is "
                        f"{MAX_RECEIVE}"
                    )
                if self._have >= 4 + length:
                    self._take(4)
                    return self._take(length)
            try:
                if self._receive_pieces is not None:
                    pieces = await self._receive_pieces(_RECEIVE_PIECES)
                else:
                    pieces = [await self._stream.receive_some(_RECEIVE_CHUNK)]
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(f"connection to {self.peer} lost: {exc}") from exc
            if not pieces or not pieces[0]:
                raise ConnectionLost(f"{self.peer} closed the connection")
            self.last_received = trio.current_time()
            for piece in pieces:
                self._chunks.append(piece)
                self._have += len(piece)

    def _peek(self, n: int) -> bytes:
        """The next ``n`` bytes (``n`` small, all received), left in place."""
        first = self._chunks[0]
        if len(first) - self._off >= n:
            return bytes(first[self._off : self._off + n])
        head = bytearray(first[self._off :])
        for chunk in islice(self._chunks, 1, None):
            head += chunk[: n - len(head)]
            if len(head) >= n:
                break
        return bytes(head)

    def _take(self, n: int) -> bytearray:
        """The next ``n`` received bytes, copied once into a message of their own."""
        out = bytearray(n)
        view = memoryview(out)
        filled = 0
        chunks = self._chunks
        while filled < n:
            chunk, off = chunks[0], self._off
            k = min(n - filled, len(chunk) - off)
            view[filled : filled + k] = memoryview(chunk)[off : off + k]
            filled += k
            if off + k == len(chunk):
                chunks.popleft()
                self._off = 0
            else:
                self._off = off + k
        self._have -= n
        return out

    async def aclose(self) -> None:
        self._broken = self._broken or ConnectionLost("closed")
        await self._stream.aclose()
