"""QUIC beside TCP: get/put of SIZE through the quicfs library, in one run.

    .venv/bin/python bench/quic.py [--size-mib 256] [--repeat 2]

Rows: over TCP straight to smbd; over QUIC (1452-B datagrams) through `quicfs gateway`;
the same through our impairment proxy at 1 % loss; and, as a ceiling, two qh3
QuicConnections pumping one stream's bytes into each other in memory (no sockets, no
SMB). All on the signed share, best of REPEAT. Writes bench/results/quic.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench.common import library_rates  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402

transfer = library_rates


async def via_proxy(gw: GatewayProcess, opts: str, data: bytes, repeat: int,
                    loss: float) -> tuple[float, float]:
    """Through the impairment proxy, run as its own process so it does not take the
    client's CPU (the figure is then QUIC's loss recovery, not the proxy's speed)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.support.impair", "--upstream",
         f"127.0.0.1:{gw.port}", "--loss", str(loss), "--seed", "1"],
        stdout=subprocess.PIPE, cwd=str(ROOT),
    )
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.receive_some(100)).decode()
        port = int(line.split()[1])
        return await transfer(f"//127.0.0.1:{port}/signed", opts, data, repeat)
    finally:
        proc.terminate()
        await proc.wait()


def memory_ceiling(size: int) -> float:
    """MB/s of one stream between two qh3 engines in memory, 1452-B datagrams."""
    from qh3.quic.configuration import QuicConfiguration
    from qh3.quic.connection import QuicConnection

    from quicfs.cert import make_self_signed

    d = Path(tempfile.mkdtemp())
    cert, key = make_self_signed(["localhost"])
    (d / "c.pem").write_bytes(cert)
    (d / "k.pem").write_bytes(key)
    import ssl

    ccfg = QuicConfiguration(is_client=True, alpn_protocols=["smb"], max_datagram_size=1452)
    ccfg.verify_mode = ssl.CERT_NONE
    scfg = QuicConfiguration(is_client=False, alpn_protocols=["smb"], max_datagram_size=1452)
    scfg.load_cert_chain(str(d / "c.pem"), str(d / "k.pem"))
    client = QuicConnection(configuration=ccfg)
    server: QuicConnection | None = None
    now = 0.0
    caddr, saddr = ("127.0.0.1", 1), ("127.0.0.1", 2)
    client.connect(saddr, now)

    def pump() -> None:
        nonlocal server
        for data, _ in client.datagrams_to_send(now):
            if server is None:
                server = QuicConnection(configuration=scfg,
                                        original_destination_connection_id=data[6:14])
            server.receive_datagram(data, caddr, now)
        if server is not None:
            for data, _ in server.datagrams_to_send(now):
                client.receive_datagram(data, saddr, now)

    for _ in range(20):
        pump()
        now += 0.001
    sid = client.get_next_available_stream_id()
    chunk = os.urandom(1 << 20)
    received = 0
    sent = 0
    start = time.perf_counter()
    while received < size:
        if sent < size and client.get_send_buffer_size(sid) < (4 << 20):
            client.send_stream_data(sid, chunk)
            sent += len(chunk)
        pump()
        assert server is not None
        while (ev := server.next_event()) is not None:
            received += len(getattr(ev, "data", b""))
        while client.next_event() is not None:
            pass
        now += 0.0001
        timer = client.get_timer()
        if timer is not None and timer <= now:
            client.handle_timer(now)
    return size / (time.perf_counter() - start) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    data = os.urandom(args.size_mib << 20)
    rows: dict[str, tuple[float, float]] = {}
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-"))) as samba:
        creds = f"username={samba.username},password={samba.password}"
        rows["tcp"] = trio.run(transfer, samba.url("signed"), f"transport=tcp,{creds}", data,
                               args.repeat)
        gw = GatewayProcess(Path(tempfile.mkdtemp(prefix="quicfs-bench-gw-")), samba.port)
        gw.start()
        try:
            qopts = gw.options(samba)
            rows["quic 1452"] = trio.run(transfer, gw.url("signed"), qopts, data, args.repeat)
            rows["quic 1452, 1% loss"] = trio.run(via_proxy, gw, qopts, data, args.repeat,
                                                  0.01)
        finally:
            gw.stop()
    ceiling = memory_ceiling(args.size_mib << 20)
    print(f"{args.size_mib} MiB on loopback, signed share, best of {args.repeat}, MB/s")
    print(f"{'path':22} {'put':>8} {'get':>8}")
    for name, (put, get) in rows.items():
        print(f"{name:22} {put:8.1f} {get:8.1f}")
    print(f"{'qh3 in memory (ceiling)':22} {ceiling:8.1f}")
    tcp_put, tcp_get = rows["tcp"]
    q_put, q_get = rows["quic 1452"]
    l_put, l_get = rows["quic 1452, 1% loss"]
    print(f"quic/tcp: put {q_put / tcp_put:.2f} get {q_get / tcp_get:.2f}; "
          f"1% loss/clean quic: put {l_put / q_put:.2f} get {l_get / q_get:.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quic.json").write_text(json.dumps({**rows, "ceiling": ceiling}, indent=2))


if __name__ == "__main__":
    main()
