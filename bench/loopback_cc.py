"""QUIC over real loopback sockets, per congestion controller: MB/s of one stream.

    .venv/bin/python bench/loopback_cc.py [--size-mib 64] [--repeat 3] [--cc cubic,bbr]

For each pairing (server cc, client cc) it starts ``serve_quic`` in a child process
(so each end has its own interpreter, as a gateway and a mount do) and connects with
``open_quic`` from this one, then moves SIZE on the stream each way: "put" (the
client sends, its controller governs) and "get" (the server sends). The figure is the
median of REPEAT runs, from the first byte to the receiver's word that all arrived.
The controllers are those of ``cc=``: "cubic" is qh3's own, "bbr" is our BBR on
aioquic (quicfs/transport/quic/engine.py new_engine); and, for reference, "reno": aioquic
with its own Reno and pacer, the engine BBR runs on with the controller it replaces.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from quicfs.cert import write_self_signed  # noqa: E402
from quicfs.transport.quic import QuicStream, QuicTLSOptions, open_quic  # noqa: E402
from quicfs.transport.quic.server import serve_quic  # noqa: E402

CHUNK = 256 * 1024


def _with_aioquic_reno() -> None:
    """Let cc="reno" mean aioquic with its own Reno (a reference; quicfs offers cubic
    and bbr only)."""
    from quicfs.transport.quic import client, server
    from quicfs.transport.quic.engine import new_engine

    def engine(cc: str | None = None, **kwargs: object) -> object:
        if cc != "reno":
            return new_engine(cc, **kwargs)
        from quicfs.transport.quic.engine_aioquic import AioquicEngine

        kwargs.pop("peer", None)  # new_engine's, to choose a controller by the peer
        return AioquicEngine(cc="reno", **kwargs)

    client.new_engine = server.new_engine = engine  # type: ignore[assignment]


async def _drain(stream: QuicStream) -> int:
    got = 0
    while data := await stream.receive_some(1 << 20):
        got += len(data)
    return got


async def _send(stream: QuicStream, size: int) -> None:
    chunk = bytes(CHUNK)
    left = size
    while left > 0:
        await stream.send_all(chunk[: min(left, CHUNK)])
        left -= CHUNK


async def _handle(stream: QuicStream, peer: str) -> None:
    # One request per stream: b"P" + size (we take SIZE bytes, then say how many we got)
    # or b"G" + size (we send SIZE bytes and end the stream).
    head = b""
    while len(head) < 9:
        head += await stream.receive_some(9 - len(head))
    kind, size = head[:1], struct.unpack("!Q", head[1:])[0]
    if kind == b"P":
        got = await _drain(stream)
        await stream.send_all(struct.pack("!Q", got))
    else:
        await _send(stream, size)
    await stream.send_eof()


async def serve(cc: str, cert: str, key: str) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(lambda task_status: serve_quic(
            "127.0.0.1", 0, cert=cert, key=key, handler=_handle, cc=cc,
            task_status=task_status))
        print(server.sock.getsockname()[1], flush=True)
        await trio.sleep_forever()


async def transfer(port: int, cc: str, kind: bytes, size: int) -> float:
    """MB/s of one transfer of ``size`` bytes on a fresh connection."""
    async with trio.open_nursery() as nursery:
        transport = await open_quic("127.0.0.1", port, nursery=nursery, cc=cc,
                                    tls=QuicTLSOptions(insecure=True), server_name="localhost")
        stream = transport.quic_stream
        t0 = time.perf_counter()
        await stream.send_all(kind + struct.pack("!Q", size))
        if kind == b"P":
            await _send(stream, size)
            await stream.send_eof()
            reply = await _drain(stream)
            assert reply == 8, reply
        else:
            got = await _drain(stream)
            assert got == size, (got, size)
        seconds = time.perf_counter() - t0
        await transport.aclose()
        nursery.cancel_scope.cancel()
    return size / seconds / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cc", default="cubic,bbr",
                    help="controllers to pair, comma-separated: cubic, bbr, reno")
    ap.add_argument("--serve", help=argparse.SUPPRESS)  # the child: serve with this cc
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the 'insecure' warning per connection
    _with_aioquic_reno()
    if args.serve:
        trio.run(serve, args.serve, args.cert, args.key)
        return
    size = args.size_mib << 20
    ccs = args.cc.split(",")
    tmp = tempfile.mkdtemp()
    files = write_self_signed("localhost", tmp)
    print(f"{args.size_mib} MiB on one stream, loopback, median of {args.repeat}: MB/s")
    print(f"{'server cc':10} {'client cc':10} {'put (client sends)':>20} "
          f"{'get (server sends)':>20}")
    for server_cc in ccs:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", server_cc, "--cert", str(files.cert),
             "--key", str(files.key)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            for client_cc in ccs:
                row = []
                for kind in (b"P", b"G"):
                    runs = [trio.run(transfer, port, client_cc, kind, size)
                            for _ in range(args.repeat)]
                    row.append(f"{statistics.median(runs):7.1f} ({min(runs):.1f}-{max(runs):.1f})")
                print(f"{server_cc:10} {client_cc:10} {row[0]:>20} {row[1]:>20}", flush=True)
        finally:
            child.terminate()
            child.wait()


if __name__ == "__main__":
    main()
