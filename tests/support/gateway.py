"""The project's own QUIC gateway, run as users run it (`quicfs gateway`), in front of the
private smbd; a fresh self-signed certificate per run. What the process costs is read from
/proc: resident memory (VmRSS), CPU time (utime + stime), its TCP connections to the
backend; :class:`ProcessMonitor` samples them while a test runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quicfs.cert import write_self_signed


class GatewayError(RuntimeError):
    pass


#: QUICFS_TEST_CC=cubic|bbr: the congestion controller, and with it the QUIC engine, of
#: every test gateway (`--cc`) and of the clients that take its :meth:`options`. The
#: suite runs on loopback, where cc=auto picks qh3's CUBIC; bbr runs the same tests on
#: aioquic with our BBR, what both ends use toward any other peer (`make test-bbr`).
TEST_CC = os.environ.get("QUICFS_TEST_CC") or None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, root: Path, backend_port: int, *, name: str = "localhost",
                 extra_args: Sequence[str] = (), backend_host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        #: More `quicfs gateway` options (limits, Retry, timeouts).
        self.extra_args = list(extra_args)
        self.backend_host, self.backend_port = backend_host, backend_port
        self.host = "127.0.0.1"
        self.port = free_udp_port()
        files = write_self_signed(name, self.root, extra_names=["127.0.0.1"])
        self.cert, self.key, self.fingerprint = str(files.cert), str(files.key), files.fingerprint
        self.log_path = self.root / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        """Start (or start again, on the same port)."""
        log = open(self.log_path, "ab")
        mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quicfs.cli.main", "gateway",
             "--listen", f"{self.host}:{self.port}",
             "--backend", f"{self.backend_host}:{self.backend_port}",
             "--cert", self.cert, "--key", self.key,
             *(["--cc", TEST_CC] if TEST_CC else []), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            if b"gateway listening" in self.log_path.read_bytes()[mark:]:
                return self
            time.sleep(0.05)
        self.stop()
        raise GatewayError(f"gateway did not start in 15 s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the gateway dies without a word to anyone (a crash, a power cut)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    # ------------------------------------------------------------------ what it costs
    @property
    def pid(self) -> int:
        assert self.proc is not None, "the gateway is not running"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int | None:
        """Resident bytes now (None once it is gone)."""
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float | None:
        """CPU time used so far, user and system (None once it is gone)."""
        return cpu_seconds(self.pid)

    def backend_connections(self) -> int:
        """Its TCP connections to the backend port, established now."""
        return tcp_connections(self.pid, self.backend_port)

    def monitor(self, interval: float = 0.1, *, kill_above: int | None = None
                ) -> ProcessMonitor:
        """A sampler of this gateway (a context manager: it samples until the ``with``
        ends); with ``kill_above``, it kills the gateway whose resident memory passes that
        many bytes (a test must not take the machine down with it)."""
        return ProcessMonitor(self.pid, interval, backend_port=self.backend_port,
                              kill_above=kill_above)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, share: str, path: str = "") -> str:
        base = f"//{self.host}:{self.port}/{share}"
        return f"{base}/{path}" if path else base

    def options(self, samba, **extra: str) -> str:
        parts = ["transport=quic", f"fingerprint={self.fingerprint}",
                 f"username={samba.username}", f"password={samba.password}"]
        if TEST_CC:
            parts.append(f"cc={TEST_CC}")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return ",".join(parts)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` from /proc/PID/status, in bytes; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None  # a zombie has no VmRSS


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` from /proc/PID/stat, in seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def tcp_connections(pid: int, remote_port: int) -> int:
    """How many established TCP connections process ``pid`` holds to ``remote_port``
    (/proc/net/tcp and tcp6, matched to the process by socket inode)."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    port = int(cols[2].rsplit(":", 1)[1], 16)
                    if port == remote_port and cols[3] == "01" and cols[9] in inodes:
                        count += 1
        except OSError:
            continue
    return count


@dataclass
class Sample:
    t: float  # time.monotonic()
    rss: int
    cpu: float
    backend: int


class ProcessMonitor:
    """Samples a process every ``interval`` seconds in a thread of its own (the test's
    trio loop may be busy): resident memory, CPU time and, with ``backend_port``, its
    established TCP connections to that port. Use as a context manager. With
    ``kill_above``, a process whose resident memory passes that many bytes is killed
    (SIGKILL, its process group) and ``killed_at`` says at how much."""

    def __init__(self, pid: int, interval: float = 0.1, *,
                 backend_port: int | None = None, kill_above: int | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.backend_port = backend_port
        self.kill_above = kill_above
        self.killed_at: int | None = None
        self.samples: list[Sample] = []
        self.gone = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"monitor-{pid}")

    def __enter__(self) -> ProcessMonitor:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> Sample | None:
        rss, cpu = rss_bytes(self.pid), cpu_seconds(self.pid)
        if rss is None or cpu is None:
            self.gone = True
            return None
        backend = (tcp_connections(self.pid, self.backend_port)
                   if self.backend_port is not None else 0)
        s = Sample(time.monotonic(), rss, cpu, backend)
        self.samples.append(s)
        if self.kill_above is not None and rss > self.kill_above and self.killed_at is None:
            self.killed_at = rss
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
        return s

    @property
    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)

    @property
    def peak_backend(self) -> int:
        return max((s.backend for s in self.samples), default=0)

    def cpu_share(self, since: float, until: float | None = None) -> float:
        """CPU used between two moments (time.monotonic()), as a share of one core; from
        the samples nearest inside the window."""
        inside = [s for s in self.samples
                  if s.t >= since and (until is None or s.t <= until)]
        if len(inside) < 2:
            return 0.0
        first, last = inside[0], inside[-1]
        return (last.cpu - first.cpu) / max(last.t - first.t, 1e-6)


__all__ = ["GatewayError", "GatewayProcess", "ProcessMonitor", "Sample", "cpu_seconds",
           "free_udp_port", "rss_bytes", "tcp_connections"]
