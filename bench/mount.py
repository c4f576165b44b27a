"""The mount, measured: sequential I/O and metadata, over QUIC and TCP, beside peers.

    .venv/bin/pip install -e '.[bench]'   # smbprotocol, the metadata peer
    .venv/bin/python bench/mount.py [--size-mib 1024] [--files 2000] [--entries 10000]

Rows: sequential write and read of SIZE through the mount (dd, 1 MiB blocks, page cache
dropped before reading) over QUIC (through `quicfs gateway`) and TCP, beside `quicfs get`
on the same transport and smbclient get/put; create + stat + unlink of FILES files;
`ls -l` of a directory of ENTRIES entries, cold (fresh mount) and warm (again at once);
and the same create/stat/unlink with smbprotocol as the peer. Writes
bench/results/mount.json.
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

from tests.fuse.conftest import Mount  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]


def timed(cmd: list[str], **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def drop_caches() -> None:
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def metadata(root: Path, files: int) -> dict[str, float]:
    """Files per second for create, stat, unlink."""
    d = root / "meta"
    d.mkdir(exist_ok=True)
    out = {}
    t = time.perf_counter()
    for i in range(files):
        (d / f"f{i}").write_bytes(b"")
    out["create/s"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(files):
        os.stat(d / f"f{i}")
    out["stat/s"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(files):
        os.unlink(d / f"f{i}")
    out["unlink/s"] = files / (time.perf_counter() - t)
    d.rmdir()
    return out


def smbprotocol_metadata(samba: SambaServer, files: int) -> dict[str, float]:
    try:
        import smbclient  # smbprotocol's high-level API
    except ImportError:
        return {"skipped": 1.0}
    smbclient.register_session(samba.host, username=samba.username, password=samba.password,
                               port=samba.port)
    base = rf"\\{samba.host}\plain\smbp-meta"
    smbclient.mkdir(base, port=samba.port)
    out = {}
    t = time.perf_counter()
    for i in range(files):
        with smbclient.open_file(rf"{base}\f{i}", mode="wb", port=samba.port):
            pass
    out["create/s"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(files):
        smbclient.stat(rf"{base}\f{i}", port=samba.port)
    out["stat/s"] = files / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(files):
        smbclient.remove(rf"{base}\f{i}", port=samba.port)
    out["unlink/s"] = files / (time.perf_counter() - t)
    smbclient.rmdir(base, port=samba.port)
    smbclient.reset_connection_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=10000)
    ap.add_argument("--extra-options", default="",
                    help="more mount options, e.g. closetimeo=0 to compare")
    args = ap.parse_args()
    size = args.size_mib << 20
    scratch = Path(tempfile.mkdtemp(prefix="quicfs-bench-", dir="/dev/shm"))
    src = scratch / "src.bin"
    with open(src, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    results: dict[str, dict[str, float]] = {}
    with SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-bench-smb-"))) as samba:
        gw = GatewayProcess(Path(tempfile.mkdtemp(prefix="quicfs-bench-gw-")), samba.port)
        gw.start()
        try:
            creds = f"username={samba.username},password={samba.password}"
            if args.extra_options:
                creds += f",{args.extra_options}"
            setups = {
                "tcp": (samba.url("plain"), f"transport=tcp,{creds}"),
                "quic": (gw.url("plain"), ",".join(filter(None, [gw.options(samba),
                                                                args.extra_options]))),
            }
            big = samba.mkdir("plain", "big")
            for i in range(args.entries):
                (big / f"entry-{i:05d}").touch()
            for name, (url, opts) in setups.items():
                mnt = scratch / f"mnt-{name}"
                mnt.mkdir()
                r: dict[str, float] = {}
                with Mount(mnt, url, opts):
                    t = timed(["dd", f"if={src}", f"of={mnt}/seq.bin", "bs=1M", "conv=fsync"])
                    r["mount write MB/s"] = size / t / 1e6
                    drop_caches()
                    t = timed(["dd", f"if={mnt}/seq.bin", "of=/dev/null", "bs=1M"])
                    r["mount read MB/s"] = size / t / 1e6
                    t = timed([*QUICFS, "get", "-o", opts, f"{url}/seq.bin", "/dev/null"])
                    r["quicfs get MB/s"] = size / t / 1e6
                    os.unlink(mnt / "seq.bin")
                    r.update({f"mount {k}": v for k, v in metadata(mnt, args.files).items()})
                with Mount(mnt, url, opts):
                    r["ls -l cold s"] = timed(["ls", "-l", str(mnt / "big")])
                    r["ls -l warm s"] = timed(["ls", "-l", str(mnt / "big")])
                results[name] = r
            sc = ["smbclient", f"//{samba.host}/plain", "-p", str(samba.port), "-U",
                  f"{samba.username}%{samba.password}"]
            results["smbclient"] = {
                "put MB/s": size / timed([*sc, "-c", f"put {src} sc.bin"]) / 1e6,
                "get MB/s": size / timed([*sc, "-c", "get sc.bin /dev/null"]) / 1e6,
            }
            results["smbprotocol"] = smbprotocol_metadata(samba, args.files)
        finally:
            gw.stop()
    for p in scratch.iterdir():
        if p.is_file():
            p.unlink()
    print(json.dumps(results, indent=2))
    for name in ("tcp", "quic"):
        r = results[name]
        print(f"{name}: mount read / quicfs get = "
              f"{r['mount read MB/s'] / r['quicfs get MB/s']:.2f}")
    peer = results["smbprotocol"].get("stat/s")
    if peer:
        print(f"stat rate vs smbprotocol: tcp {results['tcp']['mount stat/s'] / peer:.1f}x, "
              f"quic {results['quic']['mount stat/s'] / peer:.1f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mount.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
