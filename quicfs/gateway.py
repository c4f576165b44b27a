"""The QUIC gateway: SMB over QUIC in front of any SMB server that speaks TCP.

    quicfs gateway --listen 0.0.0.0:443 --backend 127.0.0.1:445 --cert gw.crt --key gw.key

Each QUIC connection's bidirectional stream is spliced to its own TCP connection to the
backend. SMB needs nothing more: the framing on the QUIC stream is the same 4-byte Direct
TCP header as on TCP (MS-SMB2 2.1), so bytes pass through untouched. A client's address may
change (migration, NAT rebinding): the QUIC layer keeps the connection, so the TCP side
never notices.

One log line per connection when it ends: peer, bytes each way, duration, why it closed.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field

import trio

from quicfs.errors import ConnectError, QuicfsError

log = logging.getLogger("quicfs.gateway")

_CHUNK = 256 * 1024


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


class Gateway:
    def __init__(self, *, listen: tuple[str, int], backend: tuple[str, int], cert: str,
                 key: str, connect_timeout: float = 5.0) -> None:
        self.listen = listen
        self.backend = backend
        self.cert = cert
        self.key = key
        self.connect_timeout = connect_timeout
        self.stats = GatewayStats()
        self.bound_port: int | None = None

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Serve until cancelled; ``task_status`` gets the bound UDP port."""
        from quicfs.transport.quic_server import serve_quic

        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_quic(  # type: ignore[misc]
                    self.listen[0], self.listen[1], cert=self.cert, key=self.key,
                    handler=self._handle, task_status=task_status,
                )
            )
            self.bound_port = port
            log.info("gateway listening on UDP %s:%d, backend %s:%d", self.listen[0], port,
                     *self.backend)
            task_status.started(port)

    async def _handle(self, stream: trio.abc.HalfCloseableStream, peer: str) -> None:
        stats = self.stats
        stats.connections += 1
        stats.active += 1
        started = time.monotonic()
        up = down = 0
        reason = "closed by client"
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
                        driver = getattr(stream, "driver", None)
                        if driver is not None and driver.close_error_code == 0:
                            reason = "closed by client"  # CONNECTION_CLOSE with NO_ERROR
                        else:
                            side = "client" if upstream else "backend"
                            reason = f"{side} side failed: {exc}"
                    # One side ended: end the whole splice.
                    nursery.cancel_scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, stream, backend, True)
                    nursery.start_soon(pump, backend, stream, False)
        except ConnectError:
            # Tell the client why, in the CONNECTION_CLOSE reason (RFC 9000 19.19), so its
            # error names the backend rather than a bare closed connection.
            driver = getattr(stream, "driver", None)
            if driver is not None:
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
            moves = getattr(getattr(stream, "driver", None), "peer_moves", 0)
            line = (f"connection from {peer}: {up} bytes up, {down} bytes down, "
                    f"{time.monotonic() - started:.1f} s, {reason}"
                    + (f", client moved {moves} times" if moves else ""))
            stats.closed.append(line)
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
