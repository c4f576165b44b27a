"""Stall time of a writer through the mount in each fault of tests/fuse/test_faults.py:
from the fault (or from the moment the server can be reached again) until bytes flow.

    .venv/bin/python bench/faults.py [--mib 300] [--json]

Targets (issue: resilience): a QUIC migration stalls < 1 s; a reconnect once the gateway
is back < 2 s. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quicfs import control  # noqa: E402
from tests.fuse.conftest import Mount  # noqa: E402
from tests.fuse.test_faults import serving_smbds  # noqa: E402
from tests.support import workload  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.impair import ImpairProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402

RATE = 64
FAULT_AT = 2.0


def run(root: Path, server: SambaServer, name: str, mib: int, pattern: str,
        transport: str, fault: Callable[[Path], float], *, proxy: ImpairProcess | None = None,
        gw: GatewayProcess | None = None) -> dict[str, object]:
    """One fault: ``fault(mnt)`` returns the moment from which the stall counts;
    ``pattern`` is the sha256 the writer must end with."""
    mnt = root / f"mnt-{name}"
    mnt.mkdir()
    if transport == "tcp":
        source = server.url("plain")
        opts = f"transport=tcp,username={server.username},password={server.password}"
    else:
        assert gw is not None
        port = proxy.port if proxy is not None else gw.port
        source, opts = f"//127.0.0.1:{port}/plain", gw.options(server)
    out = root / f"{name}.json"
    with Mount(mnt, source, opts):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.support.workload", "write", str(mnt / "w.bin"),
             "--mib", str(mib), "--rate", str(RATE), "--out", str(out)], cwd=ROOT)
        time.sleep(FAULT_AT)
        at = fault(mnt)
        writer.wait(timeout=300)
        result = workload.load(str(out))
        stats = control.ask(str(mnt), "stats")
    ok = result.error == "" and result.sha256 == pattern
    return {"fault": name, "stall_s": round(result.stall_end(at) - at, 3), "intact": ok,
            "reconnects": stats["reconnects"], "migrations": stats["migrations"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="quicfs-bench-faults-"))
    os.chmod(root, 0o755)
    (root / "smbd").mkdir()
    server = SambaServer(root / "smbd").start()
    (root / "gw").mkdir()
    gw = GatewayProcess(root / "gw", server.port).start()
    rows = []
    pattern = workload.pattern_sha256(args.mib)
    try:
        def migrate(mnt: Path) -> float:
            at = time.monotonic()
            control.ask(str(mnt), "migrate")
            return at

        def restart_gateway(mnt: Path) -> float:
            gw.kill()
            time.sleep(2)
            gw.start()
            return time.monotonic()  # from the moment it is back

        def kill_smbd(mnt: Path) -> float:
            at = time.monotonic()
            for pid in serving_smbds(server):
                os.kill(pid, signal.SIGKILL)
            return at

        def reset_tcp(mnt: Path) -> float:
            at = time.monotonic()
            subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(server.port)],
                           capture_output=True, check=True)
            return at

        rows.append(run(root, server, "migration", args.mib, pattern, "quic", migrate, gw=gw))
        proxy = ImpairProcess(gw.port)
        try:
            def blackout(mnt: Path) -> float:
                proxy.command("blackout on")
                time.sleep(10)
                proxy.command("blackout off")
                return time.monotonic()  # from the moment UDP flows again

            rows.append(run(root, server, "blackout-10s", args.mib, pattern, "quic", blackout,
                            proxy=proxy, gw=gw))

            def rebind_five_times(mnt: Path) -> float:
                # A NAT rebinding the client's port: the fifth is one qh3 alone would not
                # follow (four paths per connection); the stall counts from it.
                for _ in range(4):
                    proxy.command("rebind")
                    time.sleep(0.5)
                at = time.monotonic()
                proxy.command("rebind")
                return at

            rows.append(run(root, server, "nat-rebind-5th", args.mib, pattern, "quic",
                            rebind_five_times, proxy=proxy, gw=gw))
        finally:
            proxy.close()
        rows.append(run(root, server, "gateway-restart", args.mib, pattern, "quic", restart_gateway,
                        gw=gw))
        rows.append(run(root, server, "smbd-killed", args.mib, pattern, "quic", kill_smbd, gw=gw))
        rows.append(run(root, server, "tcp-reset", args.mib, pattern, "tcp", reset_tcp))
    finally:
        gw.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'fault':<18}{'stall (s)':>10}{'reconnects':>12}{'migrations':>12}  intact")
        for r in rows:
            print(f"{r['fault']:<18}{r['stall_s']:>10}{r['reconnects']:>12}"
                  f"{r['migrations']:>12}  {r['intact']}")
        print("stall: from the fault (migration, smbd, tcp) or from the moment the path is "
              "back (gateway restart, blackout) until the writer's next MiB completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
