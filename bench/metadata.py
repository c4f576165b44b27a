"""What mount option ``metadata`` costs: the same file-tree work through a QUIC mount
with and without it (owners and modes kept in each file's EAs).

    .venv/bin/python bench/metadata.py [--files 2000]

Rows, in seconds: create FILES one-byte files, stat each, `ls -l` of the directory
(after actimeo, so the mount reads again; and on a fresh mount), `find` at once after, and
`rm -rf` on a fresh mount. Writes bench/results/metadata.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuse.conftest import Mount  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402


def seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return round(time.perf_counter() - start, 2)


def run(*cmd: str) -> None:
    subprocess.run(cmd, capture_output=True, check=True)


def tree_work(mnt: Path, url: str, opts: str, files: int) -> dict[str, float]:
    d = mnt / "tree"
    out: dict[str, float] = {}
    with Mount(mnt, url, opts):
        d.mkdir()
        out["create"] = seconds(lambda: [(d / f"f{i}").write_bytes(b"x") for i in range(files)])
        out["stat"] = seconds(lambda: [os.stat(d / f"f{i}") for i in range(files)])
        time.sleep(1.1)  # past actimeo
        out["ls -l"] = seconds(lambda: run("ls", "-l", str(d)))
    with Mount(mnt, url, opts):
        out["ls -l, fresh mount"] = seconds(lambda: run("ls", "-l", str(d)))
        out["find"] = seconds(lambda: run("find", str(d)))
    with Mount(mnt, url, opts):
        out["rm -rf, fresh mount"] = seconds(lambda: run("rm", "-rf", str(d)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-smb-"))) as samba:
        gw = GatewayProcess(Path(tempfile.mkdtemp(prefix="quicfs-bench-gw-")), samba.port)
        gw.start()
        try:
            for name, extra in (("without", ""), ("metadata", ",metadata")):
                mnt = Path(tempfile.mkdtemp(prefix="quicfs-bench-mnt-"))
                results[name] = tree_work(mnt, gw.url("plain"), gw.options(samba) + extra,
                                          args.files)
                mnt.rmdir()
        finally:
            gw.stop()
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
