"""The cost of one SMB request, over QUIC through our gateway and over TCP straight to
smbd: what bounds metadata-heavy work (xfstests' name tests, rm -rf, make).

    .venv/bin/python bench/rtt.py [--count N]

Starts a private Samba and the gateway on loopback, then times ECHO and a stat of a
missing name (one compounded CREATE+QUERY_INFO+CLOSE) one after another, in this
process. Prints medians in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tools/: the checkout's, not the package's

import trio  # noqa: E402

import quicfs  # noqa: E402
from tools.localsmb import SambaServer  # noqa: E402
from tools.servers import start_servers, stop_state  # noqa: E402


async def measure(url: str, opts: str, count: int) -> tuple[float, float]:
    async with quicfs.connect(url, opts) as share:
        for _ in range(50):  # warm up: credits, congestion window
            await share.conn.echo()
        echo, stat = [], []
        for i in range(count):
            start = time.perf_counter()
            await share.conn.echo()
            echo.append(time.perf_counter() - start)
            start = time.perf_counter()
            await share.exists(f"missing-{i}")
            stat.append(time.perf_counter() - start)
    return statistics.median(echo) * 1e3, statistics.median(stat) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quicfs-bench-rtt-"))
    samba = SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-smb-")))
    servers = start_servers(work, samba)
    try:
        cred = f"credentials={servers.credentials}"
        quic = trio.run(measure, f"//127.0.0.1:{servers.port}/plain",
                        f"transport=quic,fingerprint={servers.fingerprint},{cred}",
                        args.count)
        tcp = trio.run(measure, f"//127.0.0.1:{samba.port}/plain",
                       f"transport=tcp,{cred}", args.count)
    finally:
        stop_state(servers.state())
    print(f"{'':28}{'ECHO':>10}{'stat (compound)':>18}")
    print(f"{'QUIC via the gateway':28}{quic[0]:>8.3f} ms{quic[1]:>16.3f} ms")
    print(f"{'TCP straight to smbd':28}{tcp[0]:>8.3f} ms{tcp[1]:>16.3f} ms")


if __name__ == "__main__":
    main()
