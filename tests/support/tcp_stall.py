"""A TCP proxy in front of smbd that forwards normally but can stall chosen connections: it
plays "a backend that never reads" for the gateway behind it.

    async with trio.open_nursery() as n:
        proxy = TcpStallProxy(("127.0.0.1", smbd_port), stall={1})
        port = await n.start(proxy.run)
        ...  # the gateway's --backend is 127.0.0.1:port

Connections are numbered from 1 in the order they are accepted. For a stalled one the
proxy forwards the first ``stall_after`` bytes from the gateway's side, then stops reading
that side for good (the kernel's buffers fill, then the gateway's writes block); what the
backend says still flows back. Every other connection is spliced both ways untouched.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass

import trio

_CHUNK = 64 * 1024


@dataclass
class ConnStats:
    number: int
    peer: str
    up: int = 0  # gateway -> backend, bytes forwarded
    down: int = 0  # backend -> gateway
    stalled: bool = False
    closed: bool = False


class TcpStallProxy:
    def __init__(self, upstream: tuple[str, int], *, stall: set[int] | frozenset[int] = (
                 frozenset()), stall_after: int = 0, rcvbuf: int | None = 64 * 1024) -> None:
        self.upstream = upstream
        self.stall = set(stall)
        self.stall_after = stall_after
        #: Receive buffer of accepted sockets: small, so a stalled connection holds little
        #: in the kernel and the gateway's writes block soon.
        self.rcvbuf = rcvbuf
        self.port = 0
        self.conns: list[ConnStats] = []
        #: Set once a connection is stalled.
        self.stalling = trio.Event()

    @property
    def accepted(self) -> int:
        return len(self.conns)

    @property
    def stalled(self) -> list[ConnStats]:
        return [c for c in self.conns if c.stalled]

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:
            # Inherited by accepted sockets (set before listen: it sets the window scale).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        await sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        listener = trio.SocketListener(sock)
        async with listener, trio.open_nursery() as nursery:
            task_status.started(self.port)
            while True:
                stream = await listener.accept()
                conn = ConnStats(len(self.conns) + 1, "{}:{}".format(*stream.socket.getpeername()))
                self.conns.append(conn)
                nursery.start_soon(self._splice, stream, conn)

    async def _splice(self, client: trio.SocketStream, conn: ConnStats) -> None:
        stall = conn.number in self.stall
        try:
            upstream = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            await client.aclose()
            conn.closed = True
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def up() -> None:
                while True:
                    if stall and conn.up >= self.stall_after:
                        conn.stalled = True
                        self.stalling.set()
                        await trio.sleep_forever()  # never read the gateway's side again
                    want = _CHUNK
                    if stall:
                        want = min(want, self.stall_after - conn.up)
                    data = await client.receive_some(want)
                    if not data:
                        break
                    await upstream.send_all(data)
                    conn.up += len(data)
                await upstream.send_eof()

            async def down() -> None:
                while data := await upstream.receive_some(_CHUNK):
                    await client.send_all(data)
                    conn.down += len(data)
                nursery.cancel_scope.cancel()

            async def guarded(fn) -> None:  # type: ignore[no-untyped-def]
                try:
                    await fn()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    nursery.cancel_scope.cancel()

            nursery.start_soon(guarded, up)
            nursery.start_soon(guarded, down)
        conn.closed = True

    def stats(self) -> list[dict[str, object]]:
        return [asdict(c) for c in self.conns]


def main() -> None:
    """The proxy as its own process. Prints ``listening PORT``; then one line of JSON
    (every connection's counters) per line read on stdin; exits when stdin closes."""
    import argparse
    import json
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, metavar="HOST:PORT")
    ap.add_argument("--stall", type=int, action="append", default=[], metavar="N",
                    help="stall the Nth connection (repeatable; from 1)")
    ap.add_argument("--stall-after", type=int, default=0, metavar="BYTES")
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = TcpStallProxy((host, int(port)), stall=set(args.stall),
                          stall_after=args.stall_after)

    async def run() -> None:
        async with trio.open_nursery() as n:
            print(f"listening {await n.start(proxy.run)}", flush=True)
            async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
                while data := await stdin.receive_some():
                    for _ in range(data.count(b"\n")):
                        print(json.dumps(proxy.stats()), flush=True)
            n.cancel_scope.cancel()

    trio.run(run)


if __name__ == "__main__":
    main()
