"""The WAN bench's network: two namespaces joined through TUN devices by bench/wanlink.py,
and probes that check a link against its settings (round trip, rate, loss).

    with Topology() as net:
        net.set_link(Link("50ms/100M", rtt_ms=50, rate_mbit=100, loss=0.005))
        print(validate(net))
        with net.inside(net.cli):
            subprocess.run([...])  # the child's network is the client namespace

Names carry our pid (``qfs-srv-PID``, ``qfs-cli-PID``), so two runs never meet, and all
traffic stays in namespaces we made; ``close()`` (and so Ctrl-C through ``with``) removes
them. ``inside`` moves the calling thread: sockets it opens and processes it starts belong
to that namespace, while the mount namespace stays the host's (a FUSE mount made inside
is seen by everyone, which `ip netns exec` would not give).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.wanlink import netns_path, setns  # noqa: E402
from tests.support.gateway import cpu_seconds  # noqa: E402

SRV_ADDR = "10.201.0.1"
CLI_ADDR = "10.201.0.2"
DEV = "wan0"
SO_TIMESTAMPNS = 35  # socket(7), Linux; not in Python 3.11's socket module


@dataclass(frozen=True)
class Link:
    name: str
    rtt_ms: float
    rate_mbit: float  # each way; 0: unlimited
    loss: float = 0.0  # each way
    queue_bytes: int = 0  # 0: one BDP (at least 64 KiB)

    @property
    def capacity_mb_s(self) -> float | None:
        """What the link carries in MB/s of IP bytes (None when unlimited)."""
        return self.rate_mbit / 8 if self.rate_mbit else None


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


class Topology:
    def __init__(self, tag: str | None = None) -> None:
        tag = tag or str(os.getpid())
        self.srv = f"qfs-srv-{tag}"
        self.cli = f"qfs-cli-{tag}"
        self.work = Path(f"/dev/shm/qfs-wan-{tag}")
        self.forwarder: subprocess.Popen[bytes] | None = None
        self.link: Link | None = None
        self._made: list[str] = []

    # ------------------------------------------------------------------ lifetime
    def open(self) -> Topology:
        self.work.mkdir(parents=True, exist_ok=True)
        for ns, addr, peer in ((self.srv, SRV_ADDR, CLI_ADDR), (self.cli, CLI_ADDR, SRV_ADDR)):
            run("ip", "netns", "add", ns)
            self._made.append(ns)
            ip = ("ip", "-n", ns)
            run(*ip, "link", "set", "lo", "up")
            run(*ip, "tuntap", "add", "dev", DEV, "mode", "tun")
            run(*ip, "link", "set", DEV, "mtu", "1500", "txqueuelen", "1000", "up")
            run(*ip, "addr", "add", f"{addr}/32", "peer", peer, "dev", DEV)
        return self

    def close(self) -> None:
        self.stop_link()
        for ns in reversed(self._made):
            subprocess.run(["ip", "-n", ns, "link", "del", DEV], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Topology:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """The calling thread in namespace ``ns`` for the ``with``."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(netns_path(ns), os.O_RDONLY)
        try:
            setns(target)
            try:
                yield
            finally:
                setns(home)
        finally:
            os.close(target)
            os.close(home)

    def sysctl(self, ns: str, key: str) -> str:
        return run("ip", "netns", "exec", ns, "sysctl", "-n", key).strip()

    # ------------------------------------------------------------------ the link
    @property
    def stats_path(self) -> Path:
        return self.work / "wanlink.json"

    def set_link(self, link: Link, *, seed: int = 1) -> None:
        """(Re)start the forwarder with ``link``'s settings; the devices stay."""
        self.stop_link()
        self.stats_path.unlink(missing_ok=True)
        log_path = self.work / "wanlink.log"
        log = open(log_path, "ab")
        mark = log_path.stat().st_size
        # Niced up: the forwarder stands for the network, which does not share the
        # endpoints' CPU; on a loaded machine it would otherwise add delay of its own.
        self.forwarder = subprocess.Popen(
            ["nice", "-n", "-10", sys.executable, str(HERE / "wanlink.py"),
             "--a", f"{self.cli}:{DEV}", "--b", f"{self.srv}:{DEV}",
             "--delay-ms", str(link.rtt_ms / 2), "--rate-mbit", str(link.rate_mbit),
             "--loss", str(link.loss), "--queue-bytes", str(link.queue_bytes),
             "--seed", str(seed), "--stats", str(self.stats_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while b"forwarding" not in log_path.read_bytes()[mark:]:
            if self.forwarder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("wanlink did not start:\n"
                                   + log_path.read_text()[mark:][-2000:])
            time.sleep(0.02)
        self.link = link

    def stop_link(self) -> None:
        if self.forwarder is not None:
            if self.forwarder.poll() is None:
                self.forwarder.send_signal(signal.SIGTERM)
                try:
                    self.forwarder.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.forwarder.kill()
                    self.forwarder.wait()
            self.forwarder = None
            self.link = None

    def counters(self) -> dict[str, dict[str, int]]:
        """The forwarder's counters now: ``ab`` client to server, ``ba`` back."""
        assert self.forwarder is not None
        self.stats_path.unlink(missing_ok=True)
        self.forwarder.send_signal(signal.SIGUSR1)
        for _ in range(200):
            if self.stats_path.exists():
                return json.loads(self.stats_path.read_text())
            time.sleep(0.01)
        raise RuntimeError("wanlink did not write its counters")

    def wait_idle(self, *, quiet: int = 20, step: float = 0.5, limit: float = 30.0) -> float:
        """Wait until fewer than ``quiet`` packets cross the link in ``step`` seconds (a
        mount's keep-alives are allowed); the seconds waited."""
        def packets() -> int:
            c = self.counters()
            return c["ab"]["packets"] + c["ba"]["packets"]

        start = time.monotonic()
        last = packets()
        while time.monotonic() - start < limit:
            time.sleep(step)
            now = packets()
            if now - last < quiet:
                break
            last = now
        return time.monotonic() - start

    def forwarder_cpu(self) -> float:
        assert self.forwarder is not None
        return cpu_seconds(self.forwarder.pid) or 0.0


# ---------------------------------------------------------------------- probes
def _sock(net: Topology, ns: str, kind: int) -> socket.socket:
    with net.inside(ns):
        return socket.socket(socket.AF_INET, kind)


def rtt_probe(net: Topology, count: int = 20) -> tuple[float, float]:
    """(min, median) round trip in ms of a 64-byte UDP echo, client to server and back
    (ping is not installed here)."""
    srv = _sock(net, net.srv, socket.SOCK_DGRAM)
    cli = _sock(net, net.cli, socket.SOCK_DGRAM)
    srv.bind((SRV_ADDR, 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def echo() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(2048)
            except TimeoutError:
                continue
            srv.sendto(data, peer)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    cli.settimeout(2.0)
    rtts = []
    try:
        for i in range(count):
            start = time.perf_counter()
            cli.sendto(i.to_bytes(4, "big") * 16, (SRV_ADDR, port))
            try:
                while cli.recv(2048)[:4] != i.to_bytes(4, "big"):
                    pass
            except TimeoutError:
                continue  # lost (the link's loss applies to probes too)
            rtts.append((time.perf_counter() - start) * 1e3)
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
        srv.close()
        cli.close()
    return min(rtts), statistics.median(rtts)


def tcp_blast(net: Topology, seconds: float, *, upload: bool = True,
              cc: str | None = None) -> float:
    """Mbit/s of one TCP bulk flow for ``seconds`` (client to server when ``upload``),
    with congestion control ``cc`` on both sockets if given (the namespaces' default is
    the host's, and this container may not change it: tcp(7) TCP_CONGESTION per socket)."""
    lst = _sock(net, net.srv, socket.SOCK_STREAM)
    lst.bind((SRV_ADDR, 0))
    lst.listen(1)
    cli = _sock(net, net.cli, socket.SOCK_STREAM)
    if cc:
        for s in (lst, cli):  # an accepted socket inherits the listener's
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    cli.connect(lst.getsockname())
    srv, _ = lst.accept()
    lst.close()
    sender, receiver = (cli, srv) if upload else (srv, cli)
    got = [0, 0.0, 0.0]  # bytes, first, last

    def sink() -> None:
        buf = bytearray(1 << 20)
        while n := receiver.recv_into(buf):
            now = time.perf_counter()
            if not got[0]:
                got[1] = now
            got[0] += n
            got[2] = now

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    chunk = b"\0" * (1 << 20)
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            sender.sendall(chunk)
        sender.shutdown(socket.SHUT_WR)
        t.join(timeout=30)
    finally:
        sender.close()
        receiver.close()
    return got[0] * 8 / max(got[2] - got[1], 1e-6) / 1e6


def udp_stream(net: Topology, *, count: int, size: int, pps: float | None,
               upload: bool = True) -> tuple[int, float]:
    """Send ``count`` datagrams of ``size`` bytes (paced at ``pps``, or as fast as we
    can); (how many arrived, Mbit/s of what arrived from first to last)."""
    a = _sock(net, net.cli, socket.SOCK_DGRAM)
    b = _sock(net, net.srv, socket.SOCK_DGRAM)
    a.bind((CLI_ADDR, 0))
    b.bind((SRV_ADDR, 0))
    sender, receiver = (a, b) if upload else (b, a)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    dest = receiver.getsockname()
    got = [0, 0, 0.0, 0.0]  # datagrams, bytes, first, last
    done = threading.Event()

    # The kernel's receive time of each datagram: our thread may get the GIL late while
    # the sender's loop holds it, which would shorten the first-to-last interval.
    receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    stamp = struct.Struct("@qq")

    def sink() -> None:
        receiver.settimeout(0.5)
        buf = bytearray(65536)
        while True:
            try:
                n, anc, _flags, _addr = receiver.recvmsg_into([buf], 64)
            except TimeoutError:
                if done.is_set():
                    return
                continue
            sec, nsec = stamp.unpack_from(anc[0][2]) if anc else (0, 0)
            now = sec + nsec * 1e-9
            if not got[0]:
                got[2] = now
            got[0] += 1
            got[1] += n
            got[3] = now

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    payload = b"\0" * size
    burst = 50
    start = time.perf_counter()
    try:
        for i in range(0, count, burst):
            for _ in range(min(burst, count - i)):
                try:
                    sender.sendto(payload, dest)
                except BlockingIOError:
                    pass
                except OSError:  # ENOBUFS: the device queue is full, a drop before the link
                    pass
            if pps:
                ahead = start + (i + burst) / pps - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
        done.set()
        t.join(timeout=10)
    finally:
        a.close()
        b.close()
    return got[0], got[1] * 8 / max(got[3] - got[2], 1e-6) / 1e6


def validate(net: Topology, *, seconds: float = 2.0) -> dict[str, float]:
    """Measure the link now set against its settings: UDP echo round trip, UDP and TCP
    rate both ways, and random loss counted over paced small datagrams."""
    link = net.link
    assert link is not None
    out: dict[str, float] = {}
    out["rtt_min_ms"], out["rtt_med_ms"] = rtt_probe(net)
    udp_count = int((link.rate_mbit or 2000) * 1e6 / 8 / 1400 * seconds * 1.3)
    for up in (True, False):
        way = "up" if up else "down"
        _, out[f"udp_{way}_mbit"] = udp_stream(net, count=udp_count, size=1372, pps=None,
                                               upload=up)
        out[f"tcp_{way}_mbit"] = tcp_blast(net, seconds, upload=up)
    # The SMB client of most Linux machines and of Windows rides CUBIC, not this host's BBR.
    out["tcp_cubic_up_mbit"] = tcp_blast(net, seconds, cc="cubic")
    if link.loss:
        before = net.counters()["ab"]
        n = min(40000, max(4000, int(40 / link.loss)))
        pps = min(20000.0, (link.rate_mbit or 1000) * 1e6 / 8 / 200 / 2)
        got, _ = udp_stream(net, count=n, size=64, pps=pps)
        after = net.counters()["ab"]
        out["loss_probe_sent"] = n
        out["loss_measured"] = 1 - got / n
        seen = after["packets"] - before["packets"]
        out["loss_counted"] = (after["lost"] - before["lost"]) / max(seen, 1)
    return out


def describe(link: Link, v: dict[str, float]) -> str:
    rate = f"{link.rate_mbit:g}" if link.rate_mbit else "unlimited"
    lines = [
        f"link {link.name}: set RTT {link.rtt_ms:g} ms, rate {rate} Mbit/s, loss "
        f"{link.loss * 100:g} %",
        f"  measured: RTT min {v['rtt_min_ms']:.1f} / median {v['rtt_med_ms']:.1f} ms; "
        f"UDP {v['udp_up_mbit']:.1f} up, {v['udp_down_mbit']:.1f} down; "
        f"TCP {v['tcp_up_mbit']:.1f} up, {v['tcp_down_mbit']:.1f} down, with CUBIC "
        f"{v.get('tcp_cubic_up_mbit', 0):.1f} up (Mbit/s)",
    ]
    if "loss_measured" in v:
        lines.append(f"  loss: {v['loss_measured'] * 100:.2f} % of {int(v['loss_probe_sent'])}"
                     f" datagrams lost end to end; forwarder counted "
                     f"{v['loss_counted'] * 100:.2f} %")
    return "\n".join(lines)
