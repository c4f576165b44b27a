"""What the benchmarks share: timing Share.upload / Share.download in this process."""

from __future__ import annotations

import time

import quicfs


async def library_rates(url: str, opts: str, data: bytes, repeat: int,
                        name: str = "bench.bin") -> tuple[float, float]:
    """(put, get) in MB/s, best of ``repeat``: the library's own rate, no process start."""
    best_put = best_get = float("inf")
    async with quicfs.connect(url, opts) as share:
        for _ in range(repeat):
            pos = 0

            async def source(n: int) -> bytes:
                nonlocal pos
                piece = data[pos : pos + n]
                pos += len(piece)
                return piece

            async def sink(_: bytes) -> None:
                return None

            start = time.perf_counter()
            await share.upload(source, name)
            best_put = min(best_put, time.perf_counter() - start)
            start = time.perf_counter()
            await share.download(name, sink)
            best_get = min(best_get, time.perf_counter() - start)
    return len(data) / best_put / 1e6, len(data) / best_get / 1e6
