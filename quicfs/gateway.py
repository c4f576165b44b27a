"""The QUIC gateway: SMB over QUIC in front of any SMB server that speaks TCP.

    quicfs gateway --listen 0.0.0.0:443 --backend 127.0.0.1:445 --cert gw.crt --key gw.key

Each QUIC connection's bidirectional stream is spliced to its own TCP connection to the
backend. SMB needs nothing more: the framing on the QUIC stream is the same 4-byte Direct
TCP header as on TCP (MS-SMB2 2.1), so bytes pass through untouched. A client's address may
change (migration, NAT rebinding): the QUIC layer keeps the connection, so the TCP side
never notices.

The gateway faces the internet, so nothing a peer sends is trusted (docs/gateway.md):
the QUIC server (transport/quic/server.py) admits connections within limits, with a stateless Retry
under load; each connection carries one stream, and the backend is dialled only once that
stream opens with an SMB2 NEGOTIATE; the splice reads a side only as fast as the other
takes it, so memory per connection is bounded whatever either peer does.

One log line per connection when it ends: peer, bytes each way, duration, why it closed;
what is refused is logged once per kind per interval and summarised periodically.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field

import trio

from quicfs.errors import ConnectError, QuicfsError
from quicfs.refusals import Refusals
from quicfs.transport.quic.admission import Limits
from quicfs.transport.quic.server import QuicServer, serve_quic
from quicfs.transport.quic.server_driver import ServerDriver
from quicfs.transport.quic.stream import QuicStream

log = logging.getLogger("quicfs.gateway")

_CHUNK = 256 * 1024
#: A client has this long after its handshake to send NEGOTIATE, before the gateway
#: gives up on it; the backend is not dialled until then.
FIRST_MESSAGE_TIMEOUT = 10.0
#: The largest NEGOTIATE accepted (dialects and negotiate contexts: a few hundred bytes).
MAX_NEGOTIATE = 16 * 1024
#: The backend has this long to answer NEGOTIATE.
BACKEND_ANSWER_TIMEOUT = 10.0
#: Lines of closed connections kept in GatewayStats.
MAX_CLOSED_KEPT = 100


@dataclass
class GatewayStats:
    connections: int = 0
    active: int = 0
    bytes_up: int = 0  # client -> backend
    bytes_down: int = 0  # backend -> client
    closed: list[str] = field(default_factory=list)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    from quicfs.errors import UsageError

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad {what} '{text}': expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Refused(Exception):
    """The client's stream is refused before any backend connection is made."""


def check_negotiate(frame: bytes) -> None:
    """Raise :class:`Refused` unless ``frame`` (4-byte header and message) is an SMB2
    NEGOTIATE request (MS-SMB2 2.1, 2.2.1, 2.2.3): the backend is dialled only for a
    client that speaks SMB."""
    length = int.from_bytes(frame[1:4], "big")
    msg = frame[4:]
    if (frame[0] != 0 or len(msg) != length or msg[:4] != b"\xfeSMB"
            or int.from_bytes(msg[4:6], "little") != 64  # header StructureSize
            or int.from_bytes(msg[12:14], "little") != 0  # Command: NEGOTIATE
            or int.from_bytes(msg[16:20], "little") & 1  # SMB2_FLAGS_SERVER_TO_REDIR
            or int.from_bytes(msg[64:66], "little") != 36):  # NEGOTIATE StructureSize
        raise Refused("the first message is not an SMB2 NEGOTIATE")


async def read_first_message(stream: trio.abc.ReceiveStream) -> tuple[bytes, bytes]:
    """The first framed message on ``stream``, and whatever came after it."""
    buf = bytearray()
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[1:4], "big"):
        if len(buf) >= 4 and not 64 + 36 <= int.from_bytes(buf[1:4], "big") <= MAX_NEGOTIATE:
            raise Refused("the first message is not an SMB2 NEGOTIATE")
        data = await stream.receive_some(_CHUNK)
        if not data:
            raise Refused("the client closed its stream before NEGOTIATE")
        buf += data
    end = 4 + int.from_bytes(buf[1:4], "big")
    return bytes(buf[:end]), bytes(buf[end:])


class Gateway:
    def __init__(self, *, listen: tuple[str, int], backend: tuple[str, int], cert: str,
                 key: str, connect_timeout: float = 5.0, limits: Limits | None = None,
                 summary_interval: float = 60.0, cc: str | None = None) -> None:
        self.listen = listen
        self.backend = backend
        self.cert = cert
        self.key = key
        self.connect_timeout = connect_timeout
        self.limits = limits or Limits()
        self.summary_interval = summary_interval
        self.cc = cc
        self.stats = GatewayStats()
        self.refusals = Refusals(log)
        self.bound_port: int | None = None
        self.server: QuicServer | None = None

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Serve until cancelled; ``task_status`` gets the bound UDP port."""
        async with trio.open_nursery() as nursery:
            server: QuicServer = await nursery.start(
                lambda task_status: serve_quic(  # type: ignore[misc]
                    self.listen[0], self.listen[1], cert=self.cert, key=self.key,
                    handler=self._handle, limits=self.limits, refusals=self.refusals,
                    cc=self.cc, task_status=task_status,
                )
            )
            self.server = server
            port = server.sock.getsockname()[1]
            self.bound_port = port
            log.info("gateway listening on UDP %s:%d, backend %s:%d", self.listen[0], port,
                     *self.backend)
            nursery.start_soon(self._summaries, server)
            task_status.started(port)

    async def _summaries(self, server: QuicServer) -> None:
        """A line per interval in which anything happened: what was served, and what was
        refused or dropped, by kind (Refusals logs each kind at most once per interval)."""
        served = 0
        while True:
            await trio.sleep(self.summary_interval)
            refused = self.refusals.since_last_summary()
            new = self.stats.connections - served
            served = self.stats.connections
            if not refused and not new:
                continue
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(refused.items(),
                                                                 key=lambda kv: -kv[1]))
            log.info("summary of the last %g s: %d connections served, %d active, "
                     "%d handshakes in progress; refused or dropped: %s",
                     self.summary_interval, new, len(server.connections),
                     len(server.handshaking), counts or "none")

    async def _handle(self, stream: QuicStream, peer: str) -> None:
        driver = stream.driver
        try:
            with trio.fail_after(FIRST_MESSAGE_TIMEOUT):
                first, rest = await read_first_message(stream)
            check_negotiate(first)
        except (Refused, trio.TooSlowError) as exc:
            reason = str(exc) if isinstance(exc, Refused) else (
                f"no SMB2 NEGOTIATE within {FIRST_MESSAGE_TIMEOUT:g} s")
            self.refusals.note("refused: no SMB2 NEGOTIATE", f"{peer}: {reason}",
                               trio.current_time())
            with trio.CancelScope(shield=True):
                await driver.aclose(f"gateway: {reason}")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, QuicfsError):
            return  # the connection ended before it said anything
        await self._splice(stream, peer, first + rest)

    async def _splice(self, stream: QuicStream, peer: str, first: bytes) -> None:
        stats = self.stats
        stats.connections += 1
        stats.active += 1
        started = time.monotonic()
        up = down = 0
        reason = "closed by client"
        driver = stream.driver
        try:
            try:
                with trio.fail_after(self.connect_timeout):
                    backend = await trio.open_tcp_stream(*self.backend)
            except (OSError, trio.TooSlowError) as exc:
                reason = f"backend {self.backend[0]}:{self.backend[1]} unreachable: {exc}"
                raise ConnectError(reason) from None
            async with backend:

                async def pump(src: trio.abc.ReceiveStream, dst: trio.abc.SendStream,
                               upstream: bool) -> None:
                    nonlocal up, down, reason
                    try:
                        if not upstream:
                            # The backend answers NEGOTIATE at once, or is not serving.
                            try:
                                with trio.fail_after(BACKEND_ANSWER_TIMEOUT):
                                    data = await src.receive_some(_CHUNK)
                            except trio.TooSlowError:
                                reason = (f"backend did not answer NEGOTIATE within "
                                          f"{BACKEND_ANSWER_TIMEOUT:g} s")
                                nursery.cancel_scope.cancel()
                                return
                            if data:
                                await dst.send_all(data)
                                down += len(data)
                                stats.bytes_down += len(data)
                        while data := await src.receive_some(_CHUNK):
                            await dst.send_all(data)
                            if upstream:
                                up += len(data)
                                stats.bytes_up += len(data)
                            else:
                                down += len(data)
                                stats.bytes_down += len(data)
                        reason = "closed by client" if upstream else "closed by backend"
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                            QuicfsError) as exc:
                        if driver.close_error_code == 0:
                            reason = _client_end(driver)
                        else:
                            side = "client" if upstream else "backend"
                            reason = f"{side} side failed: {exc}"
                    # One side ended: end the whole splice.
                    nursery.cancel_scope.cancel()

                async def watch_client() -> None:
                    # A pump blocked on a backend that does not read would not see the
                    # client go: the connection's end ends the splice.
                    nonlocal reason
                    await driver.terminated.wait()
                    reason = _client_end(driver)
                    nursery.cancel_scope.cancel()

                await backend.send_all(first)
                up += len(first)
                stats.bytes_up += len(first)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, stream, backend, True)
                    nursery.start_soon(pump, backend, stream, False)
                    nursery.start_soon(watch_client)
        except (ConnectError, OSError, trio.BrokenResourceError) as exc:
            if not isinstance(exc, ConnectError):
                reason = f"backend side failed: {exc}"
            # Tell the client why, in the CONNECTION_CLOSE reason (RFC 9000 19.19), so its
            # error names the backend rather than a bare closed connection.
            with trio.CancelScope(shield=True):
                await driver.aclose(f"gateway: {reason}")
        finally:
            stats.active -= 1
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                        QuicfsError):
                    pass
            moves = driver.peer_moves
            line = (f"connection from {peer}: {up} bytes up, {down} bytes down, "
                    f"{time.monotonic() - started:.1f} s, {reason}"
                    + (f", client moved {moves} times" if moves else ""))
            stats.closed.append(line)
            del stats.closed[:-MAX_CLOSED_KEPT]
            log.info("%s", line)


async def run_gateway(gateway: Gateway) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.serve)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("gateway stopping (%s)", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)


def _client_end(driver: ServerDriver) -> str:
    """Why the client's connection ended, for the log line. A CONNECTION_CLOSE with
    NO_ERROR is an orderly close whatever its reason phrase says; the pump and the
    watcher both see it, in either order (RFC 9000 10.2)."""
    reason = driver.close_reason or ""
    if driver.close_error_code == 0 and "idle" not in reason.lower():
        return "closed by client"
    return reason or "client connection ended"
