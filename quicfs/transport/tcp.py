"""SMB over TCP (MS-SMB2 2.1, port 445)."""

from __future__ import annotations

import errno
import socket
import struct

import trio

from quicfs.errors import ConnectError
from quicfs.transport.framing import FramedStream

DEFAULT_PORT = 445


def _peer(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_tcp(host: str, port: int = DEFAULT_PORT, *, within: float = 5.0) -> FramedStream:
    """Connect within ``within`` seconds; failures become one clear ConnectError."""
    peer = _peer(host, port)
    try:
        with trio.fail_after(within):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectError(f"no TCP answer from {peer} within {within:g} s") from None
    except OSError as exc:
        raise ConnectError(_describe(exc, peer)) from None
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Large socket buffers let several MiB of reads and writes stay in flight.
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            stream.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        except OSError:
            pass
    return TcpTransport(stream, kind="tcp", peer=peer)


class TcpTransport(FramedStream):
    """A MessageTransport over one TCP connection."""

    def __init__(self, stream: trio.SocketStream, *, kind: str, peer: str) -> None:
        super().__init__(stream, kind=kind, peer=peer)
        self.socket = stream.socket

    def stats(self) -> dict[str, float | int]:
        """The kernel's view of the connection (struct tcp_info, linux/tcp.h)."""
        try:
            info = self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        except OSError:
            return {}
        # 8 one-byte fields, then u32s: [2] snd_mss, [15] rtt (us), [18] snd_cwnd
        # (segments), [23] total_retrans.
        u32 = struct.unpack_from("<24I", info, 8)
        return {"rtt_ms": u32[15] / 1000, "cwnd": u32[18] * u32[2],
                "lost_packets": u32[23]}


def _describe(exc: OSError, peer: str) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host of {peer}: {exc.strerror}"
    # trio raises an OSError wrapping every address attempt; look for a reason inside.
    reasons: list[BaseException] = [exc]
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons.extend(cause.exceptions)
    elif cause is not None:
        reasons.append(cause)
    for e in reasons:
        code = getattr(e, "errno", None)
        if code == errno.ECONNREFUSED or "refused" in str(e).lower():
            return f"connection refused by {peer} (is an SMB server listening there?)"
        if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"host of {peer} is unreachable"
    return f"cannot connect to {peer}: {exc.strerror or exc}"
