"""Faults survived through a real mount: while a 200 MiB file is written and another read
(each by its own process, paced so the fault lands mid-transfer), the gateway is killed and
restarted, the smbd serving us is killed, the client's UDP socket moves, a NAT rebinds
every second, all UDP is dropped for 10 s, the TCP connection is reset. Each time both
finish without an error, the bytes on the server and the bytes read are checked by sha256,
and the mount's own counters (`quicfs stats`) say how it got through: a QUIC migration,
or an SMB reconnect with the durable handles reclaimed.

The mount process and the servers are real; the faults are real signals, sockets and
datagrams (our impairment proxy for UDP, `ss -K` for TCP).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quicfs import control
from tests.conftest import start_samba
from tests.fuse.conftest import Mount
from tests.support import workload
from tests.support.gateway import GatewayProcess
from tests.support.impair import ImpairProcess
from tests.support.samba import SambaServer

MIB = 100
#: MiB/s each of the writer and the reader go at most: the transfer then lasts ~4 s and
#: the fault lands in its middle, on 2 cores that also run the servers (and other tests:
#: what makes the transfer last is the pace, not the size).
RATE = 25
FAULT_AT = 2.0
SOURCE = "source.bin"


@pytest.fixture(scope="module")
def server() -> Iterator[SambaServer]:
    """A private smbd: these tests kill its children; its 200 MiB files go with it."""
    srv = start_samba()
    try:
        yield srv
    finally:
        srv.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pattern(server: SambaServer) -> str:
    """The file the readers read, put straight on the server; its sha256 is also what
    every writer must leave there."""
    path = server.share_path("plain") / SOURCE
    sha = workload.write_pattern(str(path), MIB)
    os.chmod(path, 0o666)
    return sha


@pytest.fixture
def gw(server: SambaServer, tmp_path: Path) -> Iterator[GatewayProcess]:
    (tmp_path / "gw").mkdir()
    gateway = GatewayProcess(tmp_path / "gw", server.port)
    gateway.start()
    try:
        yield gateway
    finally:
        if gateway.proc is not None:
            gateway.stop()


def quic_options(gw: GatewayProcess, server: SambaServer, extra: str = "") -> str:
    return gw.options(server) + (f",{extra}" if extra else "")


def tcp_options(server: SambaServer) -> str:
    return f"transport=tcp,username={server.username},password={server.password}"


def serving_smbds(server: SambaServer) -> list[int]:
    """The smbd children serving client connections (not its helpers)."""
    assert server.proc is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        # Helpers are named (smbd-notifyd, cleanupd, smbd-scavenger); servers are not.
        if int(fields[1]) == server.proc.pid and (comm == "smbd" or comm.startswith("smbd[")):
            pids.append(int(entry.name))
    return pids


class Transfer:
    """The writer and the reader, each its own process, through the mount."""

    def __init__(self, mnt: Path, tmp: Path, *, mib: int = MIB, read: bool = True,
                 rate: int = RATE) -> None:
        self.mnt, self.tmp = mnt, tmp
        run = [sys.executable, "-m", "tests.support.workload"]
        self.procs = {"write": subprocess.Popen(
            [*run, "write", str(mnt / "written.bin"), "--mib", str(mib), "--rate",
             str(rate), "--out", str(tmp / "write.json")])}
        if read:
            self.procs["read"] = subprocess.Popen(
                [*run, "read", str(mnt / SOURCE), "--rate", str(rate),
                 "--out", str(tmp / "read.json")])

    def wait(self, timeout: float = 150) -> dict[str, workload.Result]:
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                for p in self.procs.values():
                    p.kill()
                try:
                    stats: object = control.ask(str(self.mnt), "stats")
                except Exception as exc:
                    stats = exc
                pytest.fail(f"the {name}r was still waiting after {timeout:g} s; the "
                            f"mount says {stats}")
        return {name: workload.load(str(self.tmp / f"{name}.json")) for name in self.procs}


def survive(mnt: Path, tmp: Path, server: SambaServer, pattern: str,
            fault: Callable[[], None], *, rate: int = RATE
            ) -> tuple[dict[str, object], float]:
    """Run the transfer, inject ``fault`` FAULT_AT s in, and check every byte; returns the
    mount's stats and the writer's stall (s)."""
    transfer = Transfer(mnt, tmp, rate=rate)
    time.sleep(FAULT_AT)
    assert all(p.poll() is None for p in transfer.procs.values()), "finished before the fault"
    at = time.monotonic()
    fault()
    results = transfer.wait()
    stats = control.ask(str(mnt), "stats")
    for name, result in results.items():
        assert result.error == "", f"the {name}r failed: {result.error}; {stats}"
        assert result.bytes == MIB * workload.MIB
        assert result.sha256 == pattern, f"the {name}r saw other bytes"
    # What the server holds, read beside the mount.
    assert workload.file_sha256(str(server.share_path("plain") / "written.bin")) == pattern
    return stats, results["write"].stall_end(at) - at


def both_reopened(stats: dict[str, object]) -> None:
    """Both files came back after the reconnect, none stale: reclaimed durably, or opened
    by name after the identity check where smbd closed the open instead of keeping it
    (seen now and then under load for the file being written)."""
    # Samba keeps a durable open only while its lease has Handle caching
    # (vfs_default_durable_disconnect): lease_breaks tells whether one was broken.
    shown = {k: stats[k] for k in ("reopened_handles", "reopened_by_name", "stale_handles",
                                   "lease_breaks", "events")}
    assert stats["stale_handles"] == 0, shown
    assert stats["reopened_handles"] + stats["reopened_by_name"] == 2, shown  # type: ignore[operator]
    assert stats["reopened_handles"] >= 1, shown  # type: ignore[operator]


def mount_dir(tmp_path: Path) -> Path:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return mnt


def test_gateway_killed_and_restarted(server, pattern, gw, tmp_path):
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:

        def fault() -> None:
            gw.kill()
            time.sleep(2)
            gw.start()  # the same UDP port

        stats, _ = survive(mnt, tmp_path, server, pattern, fault)
        assert stats["reconnects"] == 1 and stats["transport"] == "quic"
        assert "nothing heard from" in str(stats["last_reconnect_cause"])
        # smbd kept both durable opens while the gateway was away: reclaimed as they were.
        both_reopened(stats)
        assert stats["replays"] >= 1
        assert any("reconnected to 127.0.0.1 over QUIC" in e for e in stats["events"])


def test_serving_smbd_killed(server, pattern, gw, tmp_path):
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:

        def fault() -> None:
            pids = serving_smbds(server)
            assert len(pids) == 1, pids
            os.kill(pids[0], signal.SIGKILL)

        stats, _ = survive(mnt, tmp_path, server, pattern, fault)
        assert stats["reconnects"] == 1
        # Samba loses durable state with the process that held it: both files were opened
        # again by name, after checking they are still the same files.
        assert stats["reopened_by_name"] == 2 and stats["stale_handles"] == 0


def test_client_socket_rebound_migrates(server, pattern, gw, tmp_path):
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:
        stats, _ = survive(mnt, tmp_path, server, pattern,
                           lambda: control.ask(str(mnt), "migrate"))
        assert stats["migrations"] == 1 and stats["reconnects"] == 0
        assert stats["replays"] == 0
        assert any("QUIC connection migrated to local port" in e for e in stats["events"])


@pytest.mark.slow
def test_nat_rebinding_every_second(server, pattern, gw, tmp_path):
    proxy = ImpairProcess(gw.port, rebind_every=1.0)
    try:
        url = f"//127.0.0.1:{proxy.port}/plain"
        with Mount(mount_dir(tmp_path), url, quic_options(gw, server)) as mnt:
            # At half the pace the transfer lasts ~8 s, so six rebindings fall within it.
            stats, _ = survive(mnt, tmp_path, server, pattern, lambda: None,
                               rate=RATE // 2)
            rebinds = proxy.command("stats")["rebinds"]
            assert isinstance(rebinds, int) and rebinds >= 6
            # The gateway follows every rebinding (transport/peer_path.py): no reconnect.
            assert stats["reconnects"] == 0, stats
        gw.stop()
        # One connection, and it followed more moves than qh3 alone can (three); not
        # every rebinding is a move: one while the mount is idle, or two within a round
        # trip, is seen as one or not at all.
        moved = re.findall(r"client moved (\d+) times", gw.log())
        assert len(moved) == 1 and int(moved[0]) >= max(4, rebinds // 2), (moved, rebinds)
    finally:
        proxy.close()


@pytest.mark.slow
def test_udp_blackout_for_ten_seconds(server, pattern, gw, tmp_path):
    proxy = ImpairProcess(gw.port)
    try:
        url = f"//127.0.0.1:{proxy.port}/plain"
        with Mount(mount_dir(tmp_path), url, quic_options(gw, server)) as mnt:

            def fault() -> None:
                proxy.command("blackout on")
                time.sleep(10)
                proxy.command("blackout off")

            stats, stall = survive(mnt, tmp_path, server, pattern, fault)
            assert stats["reconnects"] == 1
            both_reopened(stats)
            assert stall >= 10
    finally:
        proxy.close()


def test_tcp_connection_reset(server, pattern, tmp_path):
    with Mount(mount_dir(tmp_path), server.url("plain"), tcp_options(server)) as mnt:

        def fault() -> None:
            reset = subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=",
                                    str(server.port)], capture_output=True, text=True)
            assert reset.returncode == 0, reset.stderr

        stats, _ = survive(mnt, tmp_path, server, pattern, fault)
        assert stats["reconnects"] == 1 and stats["transport"] == "tcp"
        both_reopened(stats)


@pytest.mark.slow
def test_auto_mount_comes_back_over_tcp_when_quic_stays_down(server, pattern, gw,
                                                              tmp_path):
    """transport=auto with fallback=tcp tries TCP again on reconnect: with the gateway
    gone for good, the mount carries on over TCP. (Without fallback=tcp or seal, a mount
    that pins the certificate stays on QUIC: tests/integration/test_fallback.py.)"""
    opts = (f"transport=auto,fallback=tcp,port={server.port},quic_port={gw.port},"
            f"fingerprint={gw.fingerprint},username={server.username},"
            f"password={server.password}")
    with Mount(mount_dir(tmp_path), "//127.0.0.1/plain", opts) as mnt:
        assert control.ask(str(mnt), "stats")["transport"] == "quic"
        stats, _ = survive(mnt, tmp_path, server, pattern, gw.kill)
        assert stats["transport"] == "tcp" and stats["reconnects"] == 1
        both_reopened(stats)


@pytest.mark.quiet  # bounds the failure: timeo + 6 s
def test_soft_mount_fails_in_time_and_keeps_what_was_written(server, pattern, gw,
                                                             tmp_path):
    proxy = ImpairProcess(gw.port)
    try:
        url = f"//127.0.0.1:{proxy.port}/plain"
        opts = quic_options(gw, server, "soft,timeo=5")
        with Mount(mount_dir(tmp_path), url, opts) as mnt:
            before = os.urandom(8 * workload.MIB + 123)
            (mnt / "before.bin").write_bytes(before)
            transfer = Transfer(mnt, tmp_path, read=False)
            time.sleep(1)
            proxy.command("blackout on")  # for as long as the test runs (> 60 s' worth)
            at = time.monotonic()
            [result] = transfer.wait(timeout=60).values()
            failed_after = time.monotonic() - at
            assert result.errno == 5, result  # EIO
            # Silence is noticed after 3 s, then the reconnect is given timeo=5 s.
            assert failed_after < 3 + 5 + 3, failed_after
            assert (server.share_path("plain") / "before.bin").read_bytes() == before
            proxy.command("blackout off")
            # The mount comes back by itself once the server can be reached.
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert (mnt / "before.bin").read_bytes() == before
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
    finally:
        proxy.close()


def test_file_replaced_while_disconnected_is_stale(server, pattern, gw, tmp_path):
    """A handle whose file the server lost and replaced fails with ESTALE, never reads
    the new file's bytes through the old handle."""
    on_server = server.share_path("plain") / "replaced.bin"
    on_server.write_bytes(b"A" * (8 * workload.MIB))
    os.chmod(on_server, 0o666)
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(mnt / "replaced.bin")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "A"
        gw.kill()
        try:
            for pid in serving_smbds(server):  # the durable open dies with its smbd
                # The one that served the killed gateway may be ending by itself.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # Replaced the way editors and rsync replace a file: a new one renamed over
            # it. (Deleted and made again under the same inode number, it cannot be told
            # apart: smbd itself takes it for the same file; docs/mount.quicfs.md.)
            new = on_server.with_name("replacement.tmp")
            new.write_bytes(b"B" * (8 * workload.MIB))
            os.chmod(new, 0o666)
            os.rename(new, on_server)
        finally:
            # Back even if a step above failed: the unmount after would otherwise wait
            # for it for ever (a hard mount's statfs), and the whole run with it.
            gw.start()
        holder.stdin.write("again\n")
        holder.stdin.flush()
        answer = holder.stdout.readline().strip()
        assert answer == "errno 116", json.dumps(control.ask(str(mnt), "stats"))  # ESTALE
        holder.wait(timeout=10)
        # The name itself now leads to the new file.
        assert (mnt / "replaced.bin").read_bytes()[:4] == b"BBBB"
        stats = control.ask(str(mnt), "stats")
        assert stats["stale_handles"] == 1 and stats["reconnects"] == 1


# Reads the head of a file, waits for a line on stdin, then reads far from the head (past
# anything read ahead): prints the first byte, or the errno.
_HOLDER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(fd, 4096, 0)[:1].decode(), flush=True)
sys.stdin.readline()
try:
    print(os.pread(fd, 4096, 6 << 20)[:1].decode(), flush=True)
except OSError as exc:
    print(f"errno {exc.errno}", flush=True)
"""


def test_idle_mount_finds_a_dead_server_and_a_hard_mount_waits(server, gw, tmp_path):
    (server.share_path("plain") / "later.txt").write_text("worth the wait\n")
    opts = quic_options(gw, server, "echo_interval=1")
    with Mount(mount_dir(tmp_path), gw.url("plain"), opts) as mnt:
        (mnt / "small.txt").write_text("still here\n")
        gw.kill()
        # Nobody uses the mount, yet the ECHO keep-alive finds the server gone (the ECHO
        # goes unanswered: the QUIC peer is silent, or the ECHO times out).
        deadline = time.monotonic() + 15
        while control.ask(str(mnt), "stats")["connected"]:
            assert time.monotonic() < deadline, control.ask(str(mnt), "stats")
            time.sleep(0.5)
        assert any("lost (" in e for e in control.ask(str(mnt), "stats")["events"])
        # A hard mount waits for the server, then the waiting call completes.
        cat = subprocess.Popen(["cat", str(mnt / "later.txt")], stdout=subprocess.PIPE)
        time.sleep(2)
        assert cat.poll() is None, "cat did not wait for the server"
        gw.start()
        out, _ = cat.communicate(timeout=20)
        assert cat.returncode == 0 and out == b"worth the wait\n"
        assert control.ask(str(mnt), "stats")["reconnects"] == 1
        assert (mnt / "small.txt").read_text() == "still here\n"


def serving_process(mnt: Path) -> int:
    """The pid of the process serving the mount at ``mnt``."""
    out = subprocess.run(["pgrep", "-f", f"quicfs.cli.mount --serve .* {mnt}$"],
                         capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("how", ["umount -l", "SIGTERM"])
def test_hard_mount_of_a_gone_server_ends_when_told(server, gw, tmp_path, how):
    """A hard mount waits for its server, but not once it is unmounted or told to stop:
    the call waiting fails and the process ends (it used to retry for ever)."""
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:
        pid = serving_process(mnt)
        (mnt / "here.txt").write_text("here\n")
        time.sleep(1.1)  # past actimeo: the root's names, as last listed, are not known
        gw.kill()
        waiting = subprocess.Popen(["stat", str(mnt / "not-yet-looked-up")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        assert waiting.poll() is None, "the hard mount did not wait"
        if how == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
        else:
            subprocess.run(["umount", "-l", str(mnt)], check=True)
        assert gone_within(pid, 15), f"the mount process outlived {how}"
        assert waiting.wait(timeout=5) != 0


#: A program that handles SIGUSR1 (by raising) while it stats a path.
HANDLES_A_SIGNAL = """
import os, signal, sys
def handler(*_):
    raise RuntimeError("signalled")
signal.signal(signal.SIGUSR1, handler)
print("ready", flush=True)
try:
    os.stat(sys.argv[1])
except RuntimeError:
    print("interrupted", flush=True)
"""


def test_a_signal_interrupts_a_call_waiting_on_a_hard_mount(server, gw, tmp_path):
    """A hard mount waits for its server without end, but the program waiting stays
    killable, and one that handles a signal gets it; the mount itself waits on, and
    serves as before once the server is back."""
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:
        (mnt / "kept.txt").write_text("kept\n")
        time.sleep(1.1)  # past actimeo: the root's names, as last listed, are not known
        gw.kill()
        waiting = subprocess.Popen(["stat", str(mnt / "not-looked-up")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        handling = subprocess.Popen([sys.executable, "-c", HANDLES_A_SIGNAL,
                                     str(mnt / "not-looked-up-either")],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert handling.stdout is not None and handling.stdout.readline() == "ready\n"
            time.sleep(3)
            assert waiting.poll() is None and handling.poll() is None, "no wait"
            signalled = time.monotonic()
            waiting.send_signal(signal.SIGTERM)
            handling.send_signal(signal.SIGUSR1)
            assert waiting.wait(timeout=15) == -signal.SIGTERM
            out, _ = handling.communicate(timeout=15)
            assert out == "interrupted\n" and handling.returncode == 0
            took = time.monotonic() - signalled
        finally:
            # (Should they still wait, the server's return lets them and the mount go.)
            gw.start()
            for proc in (waiting, handling):
                proc.kill()
                proc.wait(timeout=30)
        assert (mnt / "kept.txt").read_text() == "kept\n"
        assert control.ask(str(mnt), "stats")["reconnects"] == 1
        print(f"interrupted {took:.1f} s after the signal")


def test_quicfs_stats_command(server, gw, tmp_path):
    run = [sys.executable, "-m", "quicfs.cli.main", "stats"]
    with Mount(mount_dir(tmp_path), gw.url("plain"), quic_options(gw, server)) as mnt:
        (mnt / "hello.txt").write_text("hello\n")
        human = subprocess.run([*run, str(mnt)], capture_output=True, text=True, timeout=30)
        assert human.returncode == 0, human.stderr
        first = human.stdout.splitlines()[0]
        assert first == (f"{mnt}: {gw.url('plain')} over QUIC to 127.0.0.1:{gw.port} "
                         "(connected)")
        assert "reconnects 0, session renewals 0, migrations 0, replays 0" in human.stdout
        as_json = subprocess.run([*run, str(mnt), "--json"], capture_output=True,
                                 text=True, timeout=30)
        stats = json.loads(as_json.stdout)
        assert stats["transport"] == "quic" and stats["bytes_sent"] > 0
        assert stats["rtt_ms"] > 0 and stats["cwnd"] > 0
    plain = subprocess.run([*run, str(tmp_path)], capture_output=True, text=True,
                           timeout=30)
    assert plain.returncode == 2
    assert plain.stderr.startswith(f"quicfs: {tmp_path} is not a quicfs mount")


@pytest.mark.slow
def test_quicfs_get_survives_a_blackout(server, pattern, gw, tmp_path):
    """The one-shot command rides the same reconnect: its open is durable too."""
    proxy = ImpairProcess(gw.port)
    try:
        url = f"//127.0.0.1:{proxy.port}/plain/{SOURCE}"
        get = subprocess.Popen(
            [sys.executable, "-m", "quicfs.cli.main", "get", url, str(tmp_path / "got.bin"),
             "-o", quic_options(gw, server)], stderr=subprocess.PIPE, text=True)
        # The blackout comes once data flows, not at a set time: a loaded machine may
        # still be starting the command a second later, and a first connect is not
        # retried (it fails at once, as a mount that cannot connect does).
        deadline = time.monotonic() + 30
        while sum(p.stat().st_size for p in tmp_path.glob("got.bin.*quicfs-part")) < workload.MIB:
            assert get.poll() is None and time.monotonic() < deadline, "no transfer began"
            time.sleep(0.02)
        proxy.command("blackout on")
        time.sleep(5)
        proxy.command("blackout off")
        _, err = get.communicate(timeout=60)
        assert get.returncode == 0, err
        assert workload.file_sha256(str(tmp_path / "got.bin")) == pattern
        assert "reconnected to 127.0.0.1 over QUIC" in err
    finally:
        proxy.close()
