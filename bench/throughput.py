"""Throughput on loopback: `quicfs get`/`put` against `smbclient` get/put.

One run starts a private Samba (the test fixture), makes a file of SIZE random bytes in a
tmpfs, and times each tool moving it to and from the `signed` and `sealed` shares, best of
REPEAT runs. Both tools get into /dev/null, so the local page cache does not decide the
figure; each put is then checked by a get into a file and its checksum. Whole commands are
timed (process start included: ~0.2 s of Python imports for quicfs, ~0.03 s for
smbclient), and beside them the quicfs library's own rate (the same code without the
process start). Prints a table and writes bench/results/throughput.json.

    .venv/bin/python bench/throughput.py [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
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
from tests.support.samba import SambaServer  # noqa: E402

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return elapsed


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    scratch = Path(tempfile.mkdtemp(prefix="quicfs-bench-", dir="/dev/shm"))
    src = scratch / "src.bin"
    with open(src, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1024 * 1024))
    digest = sha(src)
    results: dict[str, dict[str, float]] = {}
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-smb-"))) as samba:
        user = f"{samba.username}%{samba.password}"
        qopts = f"transport=tcp,username={samba.username},password={samba.password}"
        for share in ("signed", "sealed"):
            smbclient = ["smbclient", f"//{samba.host}/{share}", "-p", str(samba.port),
                         "-U", user, "--option=client min protocol=SMB3_11"]
            if share == "signed":
                smbclient.append("--option=client signing=required")
            else:
                smbclient.append("--option=client smb encrypt=required")
            url = samba.url(share)
            cases = {
                "quicfs put": lambda u=url: timed([*QUICFS, "put", "-o", qopts, str(src),
                                                   f"{u}/q.bin"]),
                "smbclient put": lambda c=smbclient: timed([*c, "-c", f"put {src} s.bin"]),
                "quicfs get": lambda u=url: timed([*QUICFS, "get", "-o", qopts, f"{u}/q.bin",
                                                   "/dev/null"]),
                "smbclient get": lambda c=smbclient: timed(
                    [*c, "-c", "get s.bin /dev/null"]),
            }
            for name, run in cases.items():
                best = min(run() for _ in range(args.repeat))
                results.setdefault(share, {})[name] = size / best / 1e6
            timed([*QUICFS, "get", "-o", qopts, f"{url}/q.bin", str(scratch / "q.out")])
            timed([*smbclient, "-c", f"get s.bin {scratch / 's.out'}"])
            for out in ("q.out", "s.out"):
                if sha(scratch / out) != digest:
                    raise SystemExit(f"{share}: {out} does not match what was put")
            lib_put, lib_get = trio.run(library_rates, url, qopts, src.read_bytes(),
                                        args.repeat)
            results[share]["library put"] = lib_put
            results[share]["library get"] = lib_get
    for p in scratch.iterdir():
        p.unlink()
    scratch.rmdir()
    print(f"{args.size_mib} MiB over TCP loopback, best of {args.repeat}, MB/s")
    print(f"{'share':8} {'op':4} {'quicfs':>9} {'smbclient':>10} {'ratio':>6}   "
          "(quicfs library in-process, ratio)")
    for share, r in results.items():
        for op in ("put", "get"):
            q, s = r[f"quicfs {op}"], r[f"smbclient {op}"]
            lib = r[f"library {op}"]
            print(f"{share:8} {op:4} {q:9.1f} {s:10.1f} {q / s:6.2f}   "
                  f"(library {lib:.1f}, {lib / s:.2f})")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "throughput.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
