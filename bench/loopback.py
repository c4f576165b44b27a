"""Loopback QUIC against TCP, run by run: median MB/s and CPU per MB of each end.

    .venv/bin/python bench/loopback.py [--size-mib 256] [--runs 3] [--only quic]
        [--loss 0.01] [--cc bbr] [--opts max_datagram_size=8952] [--way put|get]
        [--profile-client FILE] [--profile-gateway FILE]

Each run opens a fresh connection through the quicfs library (no process start) and
times one put and one get of SIZE random bytes on the signed share; the table gives the
median of RUNS and the load average before each. TCP goes straight to the private smbd;
QUIC goes through `quicfs gateway` (default cc) with 1452-B datagrams; ``--loss`` adds a
row through the impairment proxy (tests/support/impair.py), in its own process. CPU per
MB is user+system seconds of the client (this process) and of the gateway, per MB moved.

``--profile-client`` writes a cProfile of the client's QUIC runs; ``--profile-gateway``
runs the gateway under cProfile and writes its profile when it stops (SIGTERM).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

import quicfs  # noqa: E402
from tests.support.gateway import GatewayProcess, cpu_seconds  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402


class ProfiledGateway(GatewayProcess):
    """`quicfs gateway` as GatewayProcess runs it, under cProfile when ``profile`` is set."""

    def __init__(self, *args: object, profile: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.profile = profile

    def start(self) -> GatewayProcess:
        if self.profile is None:
            return super().start()
        real = sys.executable
        wrapper = Path(self.root) / "python-cprofile"
        wrapper.write_text(f"#!/bin/sh\nexec {real} -m cProfile -o {self.profile} \"$@\"\n")
        wrapper.chmod(0o755)
        sys.executable = str(wrapper)
        try:
            return super().start()
        finally:
            sys.executable = real


def datagrams(share: object) -> tuple[int, int]:
    """(sent, received) by the client's QUIC connection so far; (0, 0) over TCP."""
    stats = getattr(share.conn.transport, "stats", None)  # type: ignore[attr-defined]
    if stats is None:
        return 0, 0
    figures = stats()
    return int(figures.get("datagrams_sent", 0)), int(figures.get("datagrams_received", 0))


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class Source:
    """What ``upload`` reads from: ``data``, in the pieces asked for."""

    def __init__(self, data: bytes) -> None:
        self.view, self.offset = memoryview(data), 0

    async def __call__(self, n: int) -> bytes:
        start = self.offset
        self.offset = min(len(self.view), start + n)
        return bytes(self.view[start : self.offset])


async def discard(_: bytes) -> None:
    return None


async def one_run(url: str, opts: str, data: bytes, gw_pid: int | None, way: str | None
                  ) -> list[tuple[float, float, float]]:
    """[(seconds, client CPU s, gateway CPU s)] of a put, then a get, on a fresh
    connection; with ``way``, that one is repeated 4 times instead (for a profiler that
    watches one direction), the file put once beforehand for a get."""
    out = []
    async with quicfs.connect(url, opts) as share:

        def put() -> object:
            return share.upload(Source(data), "loopback.bin")

        steps = [put, lambda: share.download("loopback.bin", discard)]
        if way is not None:
            if way == "get":
                await put()
            steps = [steps[0] if way == "put" else steps[1]] * 4
            print(f"timing {way} x4 now", flush=True)
        for step in steps:
            cpu, gcpu = own_cpu(), (cpu_seconds(gw_pid) or 0.0) if gw_pid else 0.0
            before = datagrams(share)
            start = time.perf_counter()
            await step()
            elapsed = time.perf_counter() - start
            out.append((elapsed, own_cpu() - cpu,
                        ((cpu_seconds(gw_pid) or 0.0) - gcpu) if gw_pid else 0.0))
            after = datagrams(share)
            if after != (0, 0):
                print(f"  client datagrams: {after[0] - before[0]} out, "
                      f"{after[1] - before[1]} in", flush=True)
    return out


def measure(name: str, url: str, opts: str, data: bytes, runs: int,
            gw_pid: int | None, profile: cProfile.Profile | None,
            way: str | None = None) -> dict[str, object]:
    """Median MB/s and CPU ms per MB of each end, for put and for get."""
    mb = len(data) / 1e6
    samples: dict[str, list[tuple[float, float, float]]] = {"put": [], "get": []}
    loads = []
    for _ in range(runs):
        loads.append(Path("/proc/loadavg").read_text().split()[0])
        if profile is not None:
            profile.enable()
        result = trio.run(one_run, url, opts, data, gw_pid, way)
        put, get = (result[0], result[-1]) if way is None else (result[0], result[0])
        if profile is not None:
            profile.disable()
        samples["put"].append(put)
        samples["get"].append(get)
    row: dict[str, object] = {"name": name, "load": loads}
    text = [f"{name:14}"]
    for kind, runs_ in samples.items():
        rates = [mb / s for s, _, _ in runs_]
        row[kind] = statistics.median(rates)
        row[f"{kind}_runs"] = rates
        row[f"{kind}_client_ms_per_mb"] = statistics.median(c / mb * 1e3 for _, c, _ in runs_)
        row[f"{kind}_gateway_ms_per_mb"] = statistics.median(g / mb * 1e3 for _, _, g in runs_)
        text.append(f"{kind} {row[kind]:6.1f} MB/s {[round(r) for r in rates]} CPU ms/MB "
                    f"client {row[f'{kind}_client_ms_per_mb']:.2f}"
                    + (f" gw {row[f'{kind}_gateway_ms_per_mb']:.2f}" if gw_pid else ""))
    print(" | ".join(text) + f" | load {' '.join(loads)}", flush=True)
    return row


def via_proxy(gw: GatewayProcess, loss: float) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.impair", "--upstream", f"127.0.0.1:{gw.port}",
         "--loss", str(loss), "--seed", "1"], stdout=subprocess.PIPE, cwd=str(ROOT))
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("tcp", "quic"))
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--opts", default="", help="more QUIC options, e.g. max_datagram_size=9000")
    ap.add_argument("--cc", help="congestion controller of both ends (default: the default)")
    ap.add_argument("--profile-client")
    ap.add_argument("--profile-gateway")
    ap.add_argument("--way", choices=("put", "get"),
                    help="only this direction, 4 times a run (for perf -p)")
    args = ap.parse_args()
    data = os.urandom(args.size_mib << 20)
    prof = cProfile.Profile() if args.profile_client else None
    print(f"{args.size_mib} MiB, signed share, loopback", flush=True)
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-"))) as samba:
        creds = f"username={samba.username},password={samba.password}"
        if args.only != "quic":
            measure("tcp", samba.url("signed"), f"transport=tcp,{creds}", data, args.runs,
                    None, None)
        if args.only == "tcp":
            return
        gw = ProfiledGateway(Path(tempfile.mkdtemp(prefix="quicfs-bench-gw-")), samba.port,
                             profile=args.profile_gateway,
                             extra_args=["--cc", args.cc] if args.cc else [])
        gw.start()
        try:
            qopts = gw.options(samba) + (f",{args.opts}" if args.opts else "") \
                + (f",cc={args.cc}" if args.cc else "")
            measure("quic", gw.url("signed"), qopts, data, args.runs, gw.pid, prof,
                    args.way)
            if args.loss:
                proxy, port = via_proxy(gw, args.loss)
                try:
                    measure(f"quic {args.loss:.0%} loss", f"//127.0.0.1:{port}/signed",
                            qopts, data, args.runs, gw.pid, None)
                finally:
                    proxy.terminate()
                    proxy.wait()
        finally:
            gw.stop()
    if prof is not None:
        prof.dump_stats(args.profile_client)


if __name__ == "__main__":
    main()
