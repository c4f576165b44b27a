"""The FUSE read path, measured: what one kernel READ costs inside the mount process, and
what a sequential read gets through a real mount.

    .venv/bin/python bench/read_path.py [--size-mib 256] [--read-kib 128] [--runs 3]

In process: the file system's ``read`` is called as the kernel would call it (sequential
READs of READ-KIB over a file of SIZE on the test Samba, over TCP on loopback), with a
trio instrument counting task steps (each a switch into a task). Through the mount:
``dd`` of the same file with 1 MiB blocks after dropping the kernel's pages, over TCP.
Run from a checkout, it measures that checkout's code, so two checkouts compare (issue
23: before and after the fs/ split). Writes bench/results/read_path.json.
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
from types import SimpleNamespace

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from quicfs.client.share import connect  # noqa: E402
from quicfs.fs.operations import Operations  # noqa: E402
from quicfs.options import parse_options  # noqa: E402

try:
    from tests.support.samba import PASSWORD, USER, SambaServer
except ImportError:  # before the test Samba left the package
    from quicfs.localsmb import PASSWORD, USER, SambaServer  # type: ignore[no-redef]


class Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


def _operations(share: object, opts: object, nursery: trio.Nursery) -> Operations:
    try:
        return Operations(share, opts, nursery)  # type: ignore[call-arg, arg-type]
    except TypeError:  # before Operations took its nursery when built
        ops = Operations(share, opts)  # type: ignore[call-arg, arg-type]
        ops.nursery = nursery  # type: ignore[attr-defined]
        return ops


async def in_process(url: str, name: str, size: int, chunk: int) -> dict[str, float]:
    opts = parse_options(f"username={USER},password={PASSWORD},transport=tcp")
    async with connect(url, opts) as share, trio.open_nursery() as nursery:
        ops = _operations(share, opts, nursery)
        ctx = SimpleNamespace(pid=os.getpid(), uid=0, gid=0, umask=0o022)
        entry = await ops.lookup(1, name.encode(), ctx)
        info = await ops.open(entry.st_ino, os.O_RDONLY, ctx)
        steps = Steps()
        trio.lowlevel.add_instrument(steps)
        start = time.perf_counter()
        reads = 0
        for off in range(0, size, chunk):
            data = await ops.read(info.fh, off, chunk)
            assert len(data) == min(chunk, size - off)
            reads += 1
        elapsed = time.perf_counter() - start
        trio.lowlevel.remove_instrument(steps)
        await ops.release(info.fh)
        nursery.cancel_scope.cancel()
    return {"mb_per_s": size / elapsed / 1e6, "steps_per_read": steps.count / reads}


def through_mount(server: SambaServer, name: str, size: int, work: Path) -> float:
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "quicfs.cli.mount", server.url("plain"), str(mnt),
                    "-o", f"username={USER},password={PASSWORD},transport=tcp"], check=True)
    try:
        subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
        start = time.perf_counter()
        subprocess.run(["dd", f"if={mnt / name}", "of=/dev/null", "bs=1M"], check=True,
                       capture_output=True)
        return size / (time.perf_counter() - start) / 1e6
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--read-kib", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size, chunk = args.size_mib << 20, args.read_kib << 10
    rows: dict[str, list[float]] = {"mb_per_s": [], "steps_per_read": [], "mount_mb_per_s": []}
    with tempfile.TemporaryDirectory(prefix="quicfs-readpath-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # smbd serves as a user of its own
        with SambaServer(work / "smb") as server:
            name = "big.bin"
            (server.share_path("plain") / name).write_bytes(os.urandom(size))
            for _ in range(args.runs):
                got = trio.run(in_process, server.url("plain"), name, size, chunk)
                rows["mb_per_s"].append(got["mb_per_s"])
                rows["steps_per_read"].append(got["steps_per_read"])
                rows["mount_mb_per_s"].append(through_mount(server, name, size, work))
    out = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True, cwd=ROOT).stdout.strip()
    print(json.dumps(out, indent=1))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "read_path.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
