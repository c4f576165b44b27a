"""fsstress through the mount, timed: the metadata-heavy mix (creates, renames, unlinks,
links, truncates, small writes) that xfstests' fsstress drives with several processes.

    .venv/bin/python bench/fsstress.py --fsstress /tmp/xfstests/ltp/fsstress \
        [--ops 10000] [--procs 4] [--seed 1] [--transport quic|tcp] [--extra-options ...]

A fixed seed makes runs comparable (the same operations in each process); the figure is
wall-clock seconds for the whole run. Writes bench/results/fsstress.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.mount import timed  # noqa: E402
from tests.fuse.conftest import Mount  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsstress", required=True, help="path of xfstests' ltp/fsstress")
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--transport", choices=("quic", "tcp"), default="quic")
    ap.add_argument("--extra-options", default="")
    args = ap.parse_args()
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-smb-"))) as samba:
        gw = GatewayProcess(Path(tempfile.mkdtemp(prefix="quicfs-bench-gw-")), samba.port)
        gw.start()
        try:
            if args.transport == "quic":
                url, opts = gw.url("plain"), gw.options(samba)
            else:
                url = samba.url("plain")
                opts = f"transport=tcp,username={samba.username},password={samba.password}"
            opts = ",".join(filter(None, [opts, args.extra_options]))
            mnt = Path(tempfile.mkdtemp(prefix="quicfs-bench-mnt-"))
            with Mount(mnt, url, opts):
                start = time.strftime("%Y-%m-%d %H:%M")
                seconds = timed([args.fsstress, "-d", str(mnt / "stress"), "-n",
                                 str(args.ops), "-p", str(args.procs), "-s", str(args.seed)])
        finally:
            gw.stop()
    result = {"when": start, "transport": args.transport, "ops": args.ops,
              "procs": args.procs, "seed": args.seed, "options": args.extra_options,
              "seconds": round(seconds, 1)}
    print(json.dumps(result))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fsstress.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
