"""The WAN bench: quicfs get/put over QUIC and TCP, smbclient, and the mount (dd), on
emulated links (bench/wan_net.py, bench/wanlink.py) of given round trip, rate and loss.

    .venv/bin/pip install -e '.[bench]'   # matplotlib, for the plots
    .venv/bin/python bench/wan.py [--size-mib 64] [--seconds 15] [--links NAME,...]
        [--tools quic,tcp,smbclient,mount-quic,mount-tcp] [--repeat 3 --repeat-cells ...]
        [--out bench/results]

Samba (the test smbd) and `quicfs gateway` run in the server namespace, every client in
the client one; the link's forwarder joins them. Each transfer moves SIZE or stops at
SECONDS, whichever comes first. Its rate is bytes over the time from the tool's opening
of its file, once connected, to the last byte (process start, connection, handshake and
teardown left out): a get writes into a FIFO we read, and the clock starts when the tool
opens it; a put is watched on the server's disk from when the file appears (the SMB
CREATE) until it holds everything. The first of them is biased by about one round trip
(the CREATE that follows or precedes it), 1-2 % of a transfer of several seconds. First the
forwarder's own ceiling (no delay, no rate), then per link a validation against its
settings, then the cells. Writes wan.json, wan.csv, wan.md and PNG plots under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wan_net import (  # noqa: E402
    SRV_ADDR,
    Link,
    Topology,
    describe,
    tcp_blast,
    udp_stream,
    validate,
)
from bench.wan_servers import Failed, Servers  # noqa: E402
from tests.support.gateway import GatewayProcess, cpu_seconds  # noqa: E402

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]
MiB = 1 << 20

LINKS = [
    Link("10ms/1G", 10, 1000),
    Link("50ms/100M", 50, 100),
    Link("50ms/100M/0.5%", 50, 100, 0.005),
    Link("50ms/100M/2%", 50, 100, 0.02),
    Link("100ms/20M/0.1%", 100, 20, 0.001),
    Link("100ms/1G", 100, 1000),
]
#: QUIC with qh3's CUBIC at both ends (cc=cubic, a gateway with --cc cubic); "-bbr": with
#: our BBR on aioquic at both ends (cc=bbr, --cc bbr). The default, auto, is bbr on these
#: links (engine.py).
TOOLS = ["quic", "quic-bbr", "tcp", "smbclient", "mount-quic", "mount-quic-bbr", "mount-tcp"]
NAMES = {"quic": "quicfs QUIC", "quic-bbr": "quicfs QUIC BBR", "tcp": "quicfs TCP",
         "smbclient": "smbclient", "mount-quic": "mount QUIC",
         "mount-quic-bbr": "mount QUIC BBR", "mount-tcp": "mount TCP"}


@dataclass
class Run:
    bytes: int
    seconds: float  # first byte to last
    complete: bool  # all SIZE moved (else stopped at the time bound)
    client_cpu: float = 0.0  # the client process, user + system
    gateway_cpu: float = 0.0
    setup: float = 0.0  # from the process's start to the tool's open (connecting)

    @property
    def mb_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-6) / 1e6


@dataclass
class Cell:
    link: str
    tool: str
    op: str  # get | put (the mount: read | write)
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(r.mb_s for r in self.runs) if self.runs else None


# ---------------------------------------------------------------------- one transfer
def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(proc: subprocess.Popen[bytes], until: float) -> float | None:
    """The child's CPU seconds once it exits, or None if ``until`` passes first."""
    while time.monotonic() < until:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.01)
    return None


def _start(net: Topology, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with net.inside(net.cli), open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1][:200] if lines else "(no output)"


def transfer_in(net: Topology, cmd: list[str], fifo: Path, total: int, limit: float,
                work: Path) -> Run:
    """A get: ``cmd`` writes into ``fifo``; we read it and time the bytes."""
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    got = [0, 0.0, 0.0]  # bytes, opened, last byte

    def reader() -> None:
        with open(fifo, "rb", buffering=0) as f:
            got[1] = got[2] = time.monotonic()
            buf = bytearray(MiB)
            while n := f.readinto(buf):
                got[0] += n
                got[2] = time.monotonic()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    log = work / "client.log"
    began = time.monotonic()
    proc = _start(net, cmd, log)
    try:
        cpu = _wait(proc, time.monotonic() + limit)
    except BaseException:  # Ctrl-C: the tool is in a session of its own
        _kill(proc)
        raise
    timed_out = cpu is None
    if timed_out:
        _kill(proc)
    t.join(timeout=5)
    if t.is_alive():  # the tool died before opening the FIFO: unblock our open
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(timeout=5)
    if not timed_out and proc.returncode != 0:
        raise Failed(f"exit {proc.returncode}: {_last_line(log)}")
    if not got[0]:
        # Whether the tool opened its output tells a connect or open stall (never opened)
        # from a transfer whose first bytes never came.
        where = (f"the FIFO opened {got[1] - began:.1f} s in" if got[1]
                 else "the FIFO never opened")
        raise Failed(f"no byte in {limit:g} s ({where}): {_last_line(log)}")
    if not timed_out and got[0] != total:
        raise Failed(f"{got[0]} bytes of {total}")
    return Run(got[0], got[2] - got[1], not timed_out, cpu or 0.0, setup=got[1] - began)


def transfer_out(net: Topology, cmd: list[str], size_of: Callable[[], int], total: int,
                 limit: float, work: Path) -> Run:
    """A put: ``cmd`` sends; we watch what ``size_of`` says the server holds (-1: no
    file yet)."""
    log = work / "client.log"
    began = time.monotonic()
    proc = _start(net, cmd, log)
    first = last = 0.0
    seen = -1
    cpu = None
    end = time.monotonic() + limit
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            now = time.monotonic()
            n = size_of()
            if n > seen:
                if seen < 0:
                    first = now
                seen, last = n, now
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
                break
            if now >= end:
                _kill(proc)
                break
            time.sleep(0.01)
    except BaseException:  # Ctrl-C: the tool is in a session of its own
        _kill(proc)
        raise
    if cpu is not None and proc.returncode != 0:
        raise Failed(f"exit {proc.returncode}: {_last_line(log)}")
    if seen <= 0:
        raise Failed(f"no byte in {limit:g} s: {_last_line(log)}")
    if cpu is not None and seen != total:
        raise Failed(f"{seen} bytes of {total}")
    return Run(seen, last - first, seen >= total, cpu or 0.0, setup=first - began)


def disk_bytes(*paths: Path) -> Callable[[], int]:
    """What the server has written of the first of ``paths`` that exists; -1 if none."""
    def size() -> int:
        for p in paths:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            return min(st.st_size, st.st_blocks * 512)
        return -1
    return size


# ---------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, net: Topology, args: argparse.Namespace) -> None:
        self.net = net
        self.args = args
        self.total = args.size_mib * MiB
        self.work = net.work
        bbr = any(t.endswith("-bbr") for t in args.tools.split(","))
        self.servers = Servers(net, ["cubic", "bbr"] if bbr else ["cubic"])
        self.samba = self.servers.samba
        self.serial = 0

    def start(self) -> None:
        self.servers.start()
        self.src = self.work / "src.bin"
        with open(self.src, "wb") as f:
            for _ in range(self.args.size_mib):
                f.write(os.urandom(MiB))
        share = self.samba.share_path("plain")
        (share / "src.bin").write_bytes(self.src.read_bytes())
        st = share.stat()
        os.chown(share / "src.bin", st.st_uid, st.st_gid)

    def stop(self, keep: Path) -> None:
        """Stop the servers; the gateways' logs are kept in ``keep`` (the scratch goes)."""
        self.servers.stop(keep)

    # ------------------------------------------------------------------ cells
    def gateway_of(self, tool: str) -> GatewayProcess:
        return self.servers.gateway_of(tool)

    def quicfs_opts(self, tool: str) -> tuple[str, str]:
        return self.servers.quicfs_opts(tool)

    def smbclient(self, command: str) -> list[str]:
        s = self.samba
        return ["smbclient", f"//{SRV_ADDR}/plain", "-p", str(s.port),
                "-U", f"{s.username}%{s.password}", "--option=client min protocol=SMB3_11",
                "-c", command]

    def one(self, tool: str, op: str, mnt: Path | None) -> Run:
        self.serial += 1
        name = f"w{self.serial}.bin"
        share = self.samba.share_path("plain")
        fifo = self.work / "in.fifo"
        limit, total, work = self.args.seconds, self.total, self.work
        gw = self.gateway_of(tool)
        gw_before = cpu_seconds(gw.pid) or 0.0
        try:
            if tool in ("quic", "quic-bbr", "tcp"):
                url, opts = self.quicfs_opts(tool)
                if op == "get":
                    run = transfer_in(self.net, [*QUICFS, "get", "-o", opts, f"{url}/src.bin",
                                                 str(fifo)], fifo, total, limit, work)
                else:
                    run = transfer_out(
                        self.net, [*QUICFS, "put", "-o", opts, str(self.src), f"{url}/{name}"],
                        disk_bytes(share / name, share / f".{name}.quicfs-part"),
                        total, limit, work)
            elif tool == "smbclient":
                if op == "get":
                    run = transfer_in(self.net, self.smbclient(f"get src.bin {fifo}"), fifo,
                                      total, limit, work)
                else:
                    run = transfer_out(self.net, self.smbclient(f"put {self.src} {name}"),
                                       disk_bytes(share / name), total, limit, work)
            else:
                assert mnt is not None
                if op == "read":
                    run = transfer_in(self.net, ["dd", f"if={mnt / 'src.bin'}", f"of={fifo}",
                                                 "bs=1M"], fifo, total, limit, work)
                else:
                    run = transfer_out(self.net, ["dd", f"if={self.src}",
                                                  f"of={mnt / name}", "bs=1M", "conv=fsync"],
                                       disk_bytes(share / name), total, limit, work)
        finally:
            for p in (share / name, share / f".{name}.quicfs-part"):
                p.unlink(missing_ok=True)
        if "quic" in tool:
            run.gateway_cpu = (cpu_seconds(gw.pid) or 0.0) - gw_before
        return run

    def cell(self, link: Link, tool: str, op: str, repeat: int) -> Cell:
        cell = Cell(link.name, tool, op)
        attempts = 0
        while len(cell.runs) < repeat and attempts < repeat + 2:
            attempts += 1
            try:
                with self.mounted(tool) as mnt:
                    # A run starts on a quiet link: what a stopped run left in flight (a
                    # killed client's connection the gateway still serves) has drained.
                    waited = self.net.wait_idle()
                    if waited > 1:
                        print(f"  (waited {waited:.1f} s for the link to go quiet)")
                    cell.runs.append(self.one(tool, op, mnt))
            except Failed as exc:
                cell.failures.append(str(exc))
        r = cell.runs
        shown = " ".join(f"{x.mb_s:.2f}{'' if x.complete else '*'}" for x in r)
        shown += f"  (setup {' '.join(f'{x.setup:.1f}' for x in r)} s)" if r else ""
        print(f"  {tool:10} {op:5} {shown or '-'} MB/s"
              + (f"   failures: {cell.failures}" if cell.failures else ""), flush=True)
        return cell

    def link_cells(self, link: Link, tools: list[str], repeat_cells: set[str]) -> list[Cell]:
        cells = []
        for tool in tools:
            for op in ("read", "write") if tool.startswith("mount") else ("get", "put"):
                repeat = self.args.repeat if f"{link.name}:{tool}:{op}" in repeat_cells else 1
                cells.append(self.cell(link, tool, op, repeat))
        return cells

    @contextlib.contextmanager
    def mounted(self, tool: str) -> Iterator[Path | None]:
        """A fresh mount for each run of a mount cell: a run stopped at the time bound
        leaves the mount's read-ahead and write-behind in flight, which would otherwise
        hold up the next run's open (seen: 'no byte in 15 s')."""
        if not tool.startswith("mount"):
            yield None
            return
        with self.servers.mounted(tool, self.work / "mnt") as mnt:
            yield mnt


# ---------------------------------------------------------------------- reporting
def ceiling(net: Topology, seconds: float) -> dict[str, float]:
    """The forwarder's own limit: no delay, no rate, no loss."""
    net.set_link(Link("ceiling", 0, 0))
    out: dict[str, float] = {}
    for up in (True, False):
        way = "up" if up else "down"
        cpu0, t0, c0 = net.forwarder_cpu(), time.monotonic(), net.counters()
        out[f"tcp_{way}_mbit"] = tcp_blast(net, seconds, upload=up)
        cpu, c1 = net.forwarder_cpu() - cpu0, net.counters()
        out[f"forwarder_cpu_{way}"] = cpu / (time.monotonic() - t0)
        packets = sum(c1[d]["packets"] - c0[d]["packets"] for d in ("ab", "ba"))
        out[f"forwarder_us_per_packet_{way}"] = cpu / max(packets, 1) * 1e6
        # What a whole core of forwarder would carry of this flow (its ACKs included).
        out[f"forwarder_core_mbit_{way}"] = (out[f"tcp_{way}_mbit"]
                                             / max(out[f"forwarder_cpu_{way}"], 1e-3))
    count = int(300_000 * seconds)
    _, out["udp_up_mbit"] = udp_stream(net, count=count, size=1372, pps=None)
    net.stop_link()
    return out


def markdown(cells: list[Cell], links: list[Link], tools: list[str]) -> str:
    by = {(c.link, c.tool, c.op): c for c in cells}
    cols = [(t, op) for t in tools
            for op in (("read", "write") if t.startswith("mount") else ("get", "put"))]
    head = "| link | capacity | " + " | ".join(f"{NAMES[t]} {op}" for t, op in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for link in links:
        cap = f"{link.capacity_mb_s:.1f}" if link.capacity_mb_s else "-"
        row = [link.name, cap]
        for t, op in cols:
            c = by.get((link.name, t, op))
            if c is None:
                row.append("")
                continue
            if not c.runs:
                row.append(f"failed x{len(c.failures)}")
                continue
            text = f"{c.median:.2f}"
            if len(c.runs) > 1:
                vals = [r.mb_s for r in c.runs]
                text += f" ({min(vals):.2f}-{max(vals):.2f}, n={len(vals)})"
            if not all(r.complete for r in c.runs):
                text += "*"
            if c.failures:
                text += f" ({len(c.failures)} failed)"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plots(cells: list[Cell], links: list[Link], tools: list[str], out: Path,
          tcp_blast_mb_s: dict[str, float]) -> list[Path]:
    """PNGs; ``tcp_blast_mb_s``: what a plain kernel TCP flow got on each link (drawn
    dotted: on a loaded machine it, not the link, may be the ceiling)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(c.link, c.tool, c.op): c.median for c in cells if c.runs}
    series = [(t, op) for t in tools
              for op in (("read", "write") if t.startswith("mount") else ("get", "put"))]
    written = []
    lossy = sorted((lk for lk in links if lk.rtt_ms == 50 and lk.rate_mbit == 100),
                   key=lambda lk: lk.loss)
    if lossy:
        # Against loss: one line per tool, the link's capacity across.
        fig, ax = plt.subplots(figsize=(9, 5))
        xs = range(len(lossy))
        for t, op in series:
            ys = [by.get((lk.name, t, op)) for lk in lossy]
            ax.plot(xs, [y if y is not None else float("nan") for y in ys],
                    marker="o", linestyle="-" if op in ("get", "read") else "--",
                    label=f"{NAMES[t]} {op}")
        cap = lossy[0].capacity_mb_s
        if cap:
            ax.axhline(cap, color="black", linewidth=2, label="link capacity")
        ax.set_xticks(list(xs), [f"{lk.loss * 100:g} %" for lk in lossy])
        ax.set_xlabel("random loss, each way")
        written.append(_finish(fig, ax, "Throughput against random loss (50 ms RTT, "
                               "100 Mbit/s)", out / "wan-loss.png"))
    clean = sorted(links, key=lambda lk: (lk.rtt_ms, lk.loss))
    if clean:
        # Against round trip: bars per link, each link's capacity drawn over its group.
        fig, ax = plt.subplots(figsize=(11, 5))
        width = 0.8 / len(series)
        for i, (t, op) in enumerate(series):
            ys = [by.get((lk.name, t, op), 0.0) for lk in clean]
            bx = [j + (i - len(series) / 2 + 0.5) * width for j in range(len(clean))]
            ax.bar(bx, ys, width, label=f"{NAMES[t]} {op}")
        for j, lk in enumerate(clean):
            if lk.capacity_mb_s:
                ax.hlines(lk.capacity_mb_s, j - 0.45, j + 0.45, colors="black",
                          linewidth=2, label="link capacity" if j == 0 else None)
            if lk.name in tcp_blast_mb_s:
                ax.hlines(tcp_blast_mb_s[lk.name], j - 0.45, j + 0.45, colors="grey",
                          linestyles="dotted", linewidth=2,
                          label="plain TCP flow (validation)" if j == 0 else None)
        ax.set_xticks(range(len(clean)), [lk.name for lk in clean])
        written.append(_finish(fig, ax, "Throughput on each link (RTT/rate/loss)",
                               out / "wan-rtt.png"))
    return written


def _finish(fig, ax, title: str, path: Path) -> Path:
    from matplotlib.ticker import ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def blasts(report: dict) -> dict[str, float]:
    """Each link's plain TCP flow in MB/s, the mean of both ways, from its validation."""
    return {name: (v["validation"]["tcp_up_mbit"] + v["validation"]["tcp_down_mbit"]) / 16
            for name, v in report["links"].items()}


def replot(path: Path, out: Path) -> None:
    report = json.loads(path.read_text())
    links = [Link(**v["settings"]) for v in report["links"].values()]
    cells = [Cell(c["link"], c["tool"], c["op"], [Run(**r) for r in c["runs"]],
                  c["failures"]) for c in report["cells"]]
    tools = list(dict.fromkeys(c.tool for c in cells))
    print(markdown(cells, links, tools))
    print("wrote", *plots(cells, links, tools, out, blasts(report)))


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def code_version() -> str:
    """The commit of the quicfs this runs, and whether quicfs/ differs from it."""
    here = Path(sys.modules["tests.support.gateway"].__file__ or ".").parents[2]
    git = ["git", "-C", str(here)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "quicfs"], capture_output=True,
                           text=True).stdout.strip()
    return (f"{here}: {head or 'unknown'}"
            f"{' with uncommitted changes in quicfs/' if dirty else ''}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15.0, help="time bound of one transfer")
    p.add_argument("--links", help="comma-separated names (default: all)")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--repeat", type=int, default=3, help="runs of each --repeat-cells cell")
    p.add_argument("--repeat-cells", default="50ms/100M/0.5%:quic:get,50ms/100M/0.5%:quic:put,"
                   "50ms/100M:quic:get,50ms/100M:tcp:get",
                   help="LINK:TOOL:OP,... run --repeat times")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--replot", metavar="WAN.JSON", help="only redraw table and plots of a run")
    args = p.parse_args()
    if args.replot:
        replot(Path(args.replot), Path(args.out))
        return
    links = [lk for lk in LINKS if not args.links or lk.name in args.links.split(",")]
    tools = args.tools.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # SIGTERM and Ctrl-C (even when started in the background) unwind through the
    # `with`s: mounts, servers, the forwarder and the namespaces go.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 "command": " ".join(sys.argv), "code": code_version(),
                                 "links": {}}
    cells: list[Cell] = []
    with Topology() as net:
        report["tcp_cc"] = net.sysctl(net.cli, "net.ipv4.tcp_congestion_control")
        report["ceiling"] = ceil = ceiling(net, 3.0)
        print(f"forwarder ceiling (no delay, no rate): TCP {ceil['tcp_up_mbit']:.0f} up "
              f"(forwarder at {ceil['forwarder_cpu_up']:.0%} of a core, "
              f"{ceil['forwarder_us_per_packet_up']:.1f} us a packet: one core would carry "
              f"~{ceil['forwarder_core_mbit_up']:.0f} Mbit/s of data), "
              f"{ceil['tcp_down_mbit']:.0f} down; UDP {ceil['udp_up_mbit']:.0f} Mbit/s; "
              f"TCP congestion control {report['tcp_cc']}; code {report['code']}", flush=True)
        bench = Bench(net, args)
        try:
            bench.start()
            for link in links:
                net.set_link(link)
                v = validate(net)
                print(describe(link, v), flush=True)
                before = net.counters()
                cells += bench.link_cells(link, tools, set(args.repeat_cells.split(",")))
                after = net.counters()
                report["links"][link.name] = {  # type: ignore[index]
                    "settings": asdict(link), "validation": v, "load": os.getloadavg(),
                    "forwarder": {"before": before, "after": after}}
        finally:
            bench.stop(out)
    report["cells"] = [asdict(c) for c in cells]
    report["minutes"] = (time.monotonic() - started) / 60
    table = markdown(cells, links, tools)
    (out / "wan.json").write_text(json.dumps(report, indent=2))
    (out / "wan.md").write_text(table + "\n")
    with open(out / "wan.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["link", "rtt_ms", "rate_mbit", "loss", "tool", "op", "run", "mb_s",
                    "bytes", "seconds", "complete", "client_cpu_s", "gateway_cpu_s",
                    "setup_s"])
        for c in cells:
            lk = next(x for x in links if x.name == c.link)
            for i, r in enumerate(c.runs):
                w.writerow([c.link, lk.rtt_ms, lk.rate_mbit, lk.loss, c.tool, c.op, i,
                            f"{r.mb_s:.3f}", r.bytes, f"{r.seconds:.3f}", r.complete,
                            f"{r.client_cpu:.2f}", f"{r.gateway_cpu:.2f}",
                            f"{r.setup:.2f}"])
    pngs = plots(cells, links, tools, out, blasts(report))
    print(f"\nMB/s, from the tool's open to the last byte; * = stopped at {args.seconds:g} s "
          "before "
          f"{args.size_mib} MiB\n{table}")
    print(f"wrote {out / 'wan.json'}, wan.csv, wan.md" + "".join(f", {p.name}" for p in pngs)
          + f" in {report['minutes']:.1f} min")


if __name__ == "__main__":
    main()
