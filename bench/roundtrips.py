"""Round trips per file operation through the mount, QUIC and TCP, on an emulated WAN link
(issue 22): what each operation waits for, and the SMB requests it sends.

    .venv/bin/python bench/roundtrips.py [--items 100] [--tree-files 2000]
        [--listing 1000] [--mounts 5] [--transports quic,tcp] [--ops KEY,...]
        [--rtt-ms 50] [--rate-mbit 100] [--mount-options OPTS] [--out bench/results]

Needs root (namespaces, FUSE). Samba and `quicfs gateway` run in the server namespace of
bench/wan_net.py, the mounts in the client one (bench/wan_servers.py): QUIC goes through
the gateway (qh3's CUBIC at both ends; --cc bbr for ours), TCP straight to smbd.

Every operation group runs on a mount of its own, made just before, on files made on the
server's disk (so nothing is cached) under a directory of each pass and transport. A group
is one shell command over N items, timed around the `sh -c` that runs it: one process
where the tool takes many names (`cat f1 .. fN`, `mkdir`, `rm`, `tar`, `xargs cat`), shell
builtins where it does not (`[ -e name ]` for a stat, `printf > f` for a create); only
`mv` is a process per item. Seconds per operation are the group's over N; round trips
per operation are those seconds over the link's RTT, measured with a UDP echo (rtt_probe).
Process starts and CPU are then taken out by running everything again on the same link
with no delay and no rate ("local"): "net RT" = (seconds at RTT - seconds local) / RTT,
what waits on the network. SMB sends (what a caller waited on; a compound counts once)
and messages per operation come from the mount's `quicfs stats` counters, read before
the group and after it once no request is in flight.

Mounts: mount.quicfs from its start to its return (the mount ready), then `ls` of the
root; cold (no session ticket) and resumed (the ticket the cold one saved; TCP has none:
a second mount), --mounts times each, medians. The local pass's total is the start-up
(process starts, imports, the helper's re-exec, TLS and NTLM's CPU).

Writes roundtrips.json and roundtrips.md under --out.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wan import code_version  # noqa: E402
from bench.wan_net import Link, Topology, rtt_probe  # noqa: E402
from bench.wan_servers import Failed, Servers  # noqa: E402
from quicfs import control  # noqa: E402

SMALL = 2048  # bytes of a small file
TREE_DIRS = 8  # the tar tree: its files spread over this many directories


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    per: str  # what one operation is: "item" (N), "tree" (the tree's files), "op"
    script: str  # sh, run in the group's directory of the mount; $N is the item count
    before: str = ""  # sh, run untimed just before (a listing the operation follows)
    target: str = ""  # the issue's, round trips per operation


LOOP = 'i=0; while [ $i -lt $N ]; do i=$((i+1)); {} || exit 1; done'
OPS = [
    Op("stat-missing", "stat of a missing name", "item", LOOP.format("! [ -e m$i ]"),
       target="1"),
    Op("stat-existing", "stat of a name not looked up", "item", LOOP.format("[ -e e$i ]"),
       target="1"),
    Op("cat", "cat of a 2 KiB file (after `ls -l`)", "item",
       'cat $(seq -f c%g $N) > /dev/null', before="ls -l > /dev/null", target="≤ 1.2"),
    Op("create", "`printf > f` of a new 2 KiB file", "item",
       LOOP.format(f"printf '%{SMALL}s' '' > n$i"), target="≤ 1.5"),
    Op("mkdir", "mkdir", "item", 'mkdir $(seq -f d%g $N)', target="1"),
    Op("rename", "mv within a dir (after `ls -l`)", "item", LOOP.format("mv r$i s$i"),
       before="ls -l > /dev/null", target="1"),
    Op("unlink", "rm of a file (after `ls -l`)", "item", 'rm -f $(seq -f u%g $N)',
       before="ls -l > /dev/null", target="1"),
    Op("ls-l", "`ls -l` of a directory of LISTING entries", "op",
       'for d in l1 l2 l3; do ls -l $d > /dev/null; done', target="≤ 4 + transfer"),
    Op("tar-x", "`tar x` of the tree, per file", "tree",
       'tar --no-same-owner -xf "$TARBALL"', target="≤ 1.5"),
    Op("find-cat", "`find | xargs cat` of the tree, per file", "tree",
       'find tree -type f -print0 | xargs -0 cat > /dev/null'),
    Op("du", "`du -s` of the tree, per file", "tree", 'du -s tree > /dev/null'),
    Op("rm-rf", "`rm -rf` of the tree, per file", "tree", 'rm -rf tree', target="≤ 1.5"),
]
BY_KEY = {op.key: op for op in OPS}
MOUNT_TARGET = {"cold": "≤ 6 + ≤ 0.3 s start-up", "resumed": "≤ 5"}


# ---------------------------------------------------------------------- the server's files
def owned(path: Path, owner: os.stat_result) -> None:
    """``path`` and all below it the share user's (smbd serves as that user)."""
    for d, dirs, files in os.walk(path):
        for name in [d, *(os.path.join(d, n) for n in dirs + files)]:
            os.chown(name, owner.st_uid, owner.st_gid)


def tarball(path: Path, files: int) -> None:
    """``files`` small files (0 to 4 KiB, fixed seed) in TREE_DIRS directories of tree/,
    in the order `tar c` writes them: a directory, then its files."""
    rng = random.Random(22)
    with tarfile.open(path, "w") as tar:
        for d in range(-1, TREE_DIRS):
            info = tarfile.TarInfo("tree" if d < 0 else f"tree/d{d}")
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, 1_700_000_000, 0o755
            tar.addfile(info)
            for i in range(d, files, TREE_DIRS) if d >= 0 else ():
                data = rng.randbytes(rng.randrange(4096))
                info = tarfile.TarInfo(f"tree/d{d}/f{i}.txt")
                info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
                tar.addfile(info, io.BytesIO(data))


def prepare(base: Path, args: argparse.Namespace, ops: list[Op], tar_path: Path) -> None:
    """Each group's directory under ``base`` on the server's disk, with its files."""
    n = args.items
    files = {
        "stat-existing": [f"e{i}" for i in range(1, n + 1)],
        "cat": [f"c{i}" for i in range(1, n + 1)],
        "rename": [f"r{i}" for i in range(1, n + 1)],
        "unlink": [f"u{i}" for i in range(1, n + 1)],
        "ls-l": [f"l{d}/f{i}" for d in (1, 2, 3) for i in range(args.listing)],
    }
    for op in ops:
        d = base / op.key if op.per != "tree" else base / "tree-ops"
        d.mkdir(parents=True, exist_ok=True)
        for name in files.get(op.key, []):
            (d / name).parent.mkdir(exist_ok=True)
            (d / name).write_bytes(b"x" * SMALL if op.key == "cat" else b"")
    if any(op.per == "tree" for op in ops) and "tar-x" not in {op.key for op in ops}:
        with tarfile.open(tar_path) as tar:  # the tree the other tree groups read
            tar.extractall(base / "tree-ops", filter="data")
    owned(base, base.parent.stat())


# ---------------------------------------------------------------------- the mount's side
def counters(mnt: Path) -> dict[str, Any]:
    return control.ask(str(mnt), "stats")


def settled(mnt: Path, limit: float = 10.0) -> dict[str, Any]:
    """The counters once nothing is in flight and two reads agree (what an operation
    leaves behind, a close sent in the background, counts as its own)."""
    last = counters(mnt)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(0.05)
        now = counters(mnt)
        if not now["requests_in_flight"] and now["smb_sends"] == last["smb_sends"]:
            return now
        last = now
    return last


def sh(script: str, cwd: Path, env: dict[str, str], timeout: float = 1800) -> float:
    """Seconds ``script`` took under sh in ``cwd``; Failed if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise Failed(f"{script!r} in {cwd}: exit {proc.returncode}: "
                     f"{proc.stderr.strip()[-300:]}")
    return took


def smb_delta(after: dict[str, Any], before: dict[str, Any]) -> tuple[int, int]:
    return (after["smb_sends"] - before["smb_sends"],
            after["smb_messages_sent"] - before["smb_messages_sent"])


class Runner:
    def __init__(self, net: Topology, servers: Servers, args: argparse.Namespace) -> None:
        self.net = net
        self.servers = servers
        self.args = args
        self.mnt = net.work / "mnt"
        self.tickets = net.work / "xdg-cache" / "quicfs" / "tickets"
        self.tar_path = net.work / "tree.tar"
        tarball(self.tar_path, args.tree_files)

    def tool(self, transport: str) -> str:
        return f"mount-{transport}" + ("-bbr" if self.args.cc == "bbr" else "")

    def mounts(self, transport: str) -> list[dict[str, Any]]:
        runs = []
        for _ in range(self.args.mounts):
            shutil.rmtree(self.tickets, ignore_errors=True)
            for kind in ("cold", "resumed"):
                ticket = self.tickets.is_dir() and any(self.tickets.iterdir())
                start = time.perf_counter()
                mount = self.servers.mount(self.tool(transport), self.mnt,
                                           self.args.mount_options)
                try:
                    mounted = time.perf_counter() - start
                    ready = counters(self.mnt)  # they start at 0 with the mount
                    listed = sh(f"ls {self.mnt} > /dev/null", self.net.work, dict(os.environ))
                    total = settled(self.mnt)
                finally:
                    mount.__exit__()
                runs.append({"kind": kind, "ticket": ticket, "mount_s": mounted,
                             "ls_s": listed, "total_s": mounted + listed,
                             "mount_sends": ready["smb_sends"],
                             "sends": total["smb_sends"],
                             "messages": total["smb_messages_sent"]})
        return runs

    def group(self, transport: str, op: Op, base: Path) -> dict[str, Any]:
        d = base / (op.key if op.per != "tree" else "tree-ops")
        env = dict(os.environ, N=str(self.args.items), TARBALL=str(self.tar_path))
        with self.servers.mounted(self.tool(transport), self.mnt,
                                  self.args.mount_options) as mnt:
            here = mnt / d.relative_to(self.servers.share())
            c0 = settled(mnt)
            before_s = sh(op.before, here, env) if op.before else 0.0
            os.stat(here)  # the shell's chdir finds it cached (actimeo): not counted
            c1 = counters(mnt)
            took = sh(op.script, here, env)
            c2 = settled(mnt)
        count = {"item": self.args.items, "tree": self.args.tree_files, "op": 3}[op.per]
        sends, messages = smb_delta(c2, c1)
        before_sends = smb_delta(c1, c0)
        if op.key == "tar-x":
            got = sum(len(f) for _, _, f in os.walk(d / "tree"))
            if got != self.args.tree_files:
                raise Failed(f"tar x left {got} files of {self.args.tree_files}")
        return {"seconds": took, "count": count, "sends": sends, "messages": messages,
                "before_s": before_s, "before_sends": before_sends[0]}

    def one_pass(self, name: str, ops: list[Op]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for transport in self.args.transports.split(","):
            base = self.servers.share() / f"rt-{name}-{transport}"
            prepare(base, self.args, ops, self.tar_path)
            res: dict[str, Any] = {"mounts": self.mounts(transport), "ops": {}}
            for op in ops:
                try:
                    r = res["ops"][op.key] = self.group(transport, op, base)
                except Failed as exc:  # the row stays empty; the others still run
                    res["ops"][op.key] = {"failed": str(exc)}
                    print(f"  {name} {transport:4} {op.key:14} failed: {exc}", flush=True)
                    continue
                print(f"  {name} {transport:4} {op.key:14} {r['seconds']:8.2f} s"
                      f"  {r['seconds'] / r['count'] * 1e3:8.2f} ms/op"
                      f"  sends/op {r['sends'] / r['count']:.2f}", flush=True)
            out[transport] = res
            shutil.rmtree(base, ignore_errors=True)
        return out


# ---------------------------------------------------------------------- reporting
def per_op(p: dict[str, Any], transport: str, key: str) -> dict[str, float] | None:
    """Seconds, sends and messages per operation; ``low``: the seconds the net round
    trips are reckoned from (one run: the same)."""
    r = p.get(transport, {}).get("ops", {}).get(key)
    if r is None or "failed" in r:
        return None
    n = r["count"]
    return {"s": r["seconds"] / n, "low": r["seconds"] / n, "sends": r["sends"] / n,
            "msgs": r["messages"] / n}


def mount_figures(p: dict[str, Any], transport: str, kind: str,
                  part: str = "total_s") -> dict[str, float] | None:
    """Medians of the mounts of ``kind``; ``low``: the quickest of ``part``. Start-up
    is CPU, whose jitter (0.1-0.3 s on a shared machine) only ever adds: a mount's net
    round trips are its quickest at RTT less its quickest local."""
    runs = [r for r in p.get(transport, {}).get("mounts", []) if r["kind"] == kind]
    if not runs:
        return None
    med = {k: statistics.median(r[k] for r in runs)
           for k in ("mount_s", "ls_s", "total_s", "mount_sends", "sends", "messages")}
    return {**med, "s": med[part], "low": min(r[part] for r in runs),
            "msgs": med["messages"]}


def net_rt(m: dict[str, float], lm: dict[str, float] | None, rtt: float) -> str:
    return f"{(m['low'] - lm['low']) / rtt:.2f}" if lm else ""


def markdown(report: dict[str, Any]) -> str:
    rtt = report["rtt_ms"] / 1e3
    wan, local = report["passes"]["wan"], report["passes"].get("local", {})
    transports = [t for t in ("quic", "tcp") if t in wan]
    head = ["operation"]
    for t in (t.upper() for t in transports):
        head += [f"{t} s/op (local)", f"{t} RT/op", f"{t} net RT/op", f"{t} SMB sends/op (msgs)"]
    head.append("target RT/op")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(m: dict[str, float] | None, lm: dict[str, float] | None) -> list[str]:
        """seconds (local), RT, net RT, sends (messages) of one operation."""
        if m is None:
            return ["", "", "", ""]
        floor = f" ({lm['s']:.3f})" if lm else ""
        return [f"{m['s']:.3f}{floor}", f"{m['s'] / rtt:.2f}", net_rt(m, lm, rtt),
                f"{m['sends']:.2f} ({m['msgs']:.2f})"]

    for kind in ("cold", "resumed"):
        row = [f"mount → first `ls` of the root, {kind}"]
        for t in transports:
            row += cells(mount_figures(wan, t, kind), mount_figures(local, t, kind))
        lines.append("| " + " | ".join([*row, MOUNT_TARGET[kind]]) + " |")
    for op in OPS:
        if not any(per_op(wan, t, op.key) for t in transports):
            continue
        row = [op.label.replace("LISTING", str(report["args"]["listing"]))
               .replace("|", "\\|")]
        for t in transports:
            row += cells(per_op(wan, t, op.key), per_op(local, t, op.key))
        lines.append("| " + " | ".join([*row, op.target]) + " |")
    return "\n".join(lines)


def mount_table(report: dict[str, Any]) -> str:
    """The mount's two parts: mount.quicfs until it returns, then the first `ls`."""
    rtt = report["rtt_ms"] / 1e3
    wan, local = report["passes"]["wan"], report["passes"].get("local", {})
    lines = ["| mount | mount.quicfs s, median (local) | net RT | SMB sends | "
             "first `ls` s, median (local) | net RT | SMB sends |", "|" + "---|" * 7]
    for t in (t for t in ("quic", "tcp") if t in wan):
        for kind in ("cold", "resumed"):
            row = [f"{t.upper()} {kind}"]
            for part in ("mount_s", "ls_s"):
                m, lm = mount_figures(wan, t, kind, part), mount_figures(local, t, kind, part)
                if m is None:
                    break
                sends = m["mount_sends"] if part == "mount_s" else m["sends"] - m["mount_sends"]
                floor = f" ({lm['s']:.3f})" if lm else ""
                row += [f"{m['s']:.3f}{floor}", net_rt(m, lm, rtt), f"{sends:g}"]
            else:
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> str:
    """roundtrips.json and .md under ``out``; the tables."""
    table = markdown(report) + "\n\n" + mount_table(report)
    (out / "roundtrips.json").write_text(json.dumps(report, indent=2))
    (out / "roundtrips.md").write_text(table + "\n")
    return table


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100, help="N of the per-item groups")
    p.add_argument("--tree-files", type=int, default=2000)
    p.add_argument("--listing", type=int, default=1000, help="entries of the `ls -l`")
    p.add_argument("--mounts", type=int, default=5, help="cold and resumed mounts each")
    p.add_argument("--transports", default="quic,tcp")
    p.add_argument("--cc", choices=["cubic", "bbr"], default="cubic")
    p.add_argument("--ops", help="comma-separated keys (default: all): "
                   + ",".join(BY_KEY))
    p.add_argument("--rtt-ms", type=float, default=50)
    p.add_argument("--rate-mbit", type=float, default=100)
    p.add_argument("--no-local", action="store_true", help="skip the no-delay pass")
    p.add_argument("--mount-options", default="",
                   help="more mount options for every mount (e.g. closeflush=behind)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--report", metavar="ROUNDTRIPS.JSON",
                   help="only write the tables of a run again (to --out)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(write(json.loads(Path(args.report).read_text()), out))
        return
    wanted = set(args.ops.split(",")) if args.ops else set(BY_KEY)
    if wanted - set(BY_KEY):
        p.error(f"unknown --ops {','.join(sorted(wanted - set(BY_KEY)))}")
    # In OPS's order: the tree's groups need theirs (tar x first, rm -rf last).
    ops = [op for op in OPS if op.key in wanted]
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started = time.monotonic()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "command": " ".join(sys.argv), "code": code_version(),
                              "args": vars(args), "passes": {}, "load": []}
    links = [Link(f"{args.rtt_ms:g}ms/{args.rate_mbit:g}M", args.rtt_ms, args.rate_mbit)]
    if not args.no_local:
        links.insert(0, Link("local", 0, 0))
    with Topology() as net:
        # Session tickets of these mounts only: a cold mount starts without one.
        os.environ["XDG_CACHE_HOME"] = str(net.work / "xdg-cache")
        servers = Servers(net, [args.cc], name="roundtrips")
        try:
            servers.start()
            runner = Runner(net, servers, args)
            for link in links:
                net.set_link(link)
                rtt_min, rtt_med = rtt_probe(net)
                name = "local" if link.name == "local" else "wan"
                print(f"link {link.name}: RTT min {rtt_min:.2f} / median {rtt_med:.2f} ms",
                      flush=True)
                report["load"].append(os.getloadavg())
                report["passes"][name] = runner.one_pass(name, ops)
                report[f"{name}_rtt_min_ms"], report[f"{name}_rtt_med_ms"] = rtt_min, rtt_med
                report["link"] = link.name
        finally:
            servers.stop(out)
    report["rtt_ms"] = report["wan_rtt_med_ms"]
    report["minutes"] = (time.monotonic() - started) / 60
    table = write(report, out)
    print(f"\nRTT {report['rtt_ms']:.2f} ms (UDP echo median); net RT: less the local "
          f"pass's seconds\n{table}")
    print(f"wrote {out / 'roundtrips.json'}, roundtrips.md in {report['minutes']:.1f} min")


if __name__ == "__main__":
    main()
