"""transport=auto against an attacker on the path: when QUIC may give way to TCP, and how
fast the race ends (issue 20, items 1 and 18). Real smbd, real gateway, real UDP; TCP
connections are counted by a proxy in front of smbd."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import trio

import quicfs
from tests.integration.test_quic import one_line_error
from tests.support.gateway import free_udp_port
from tests.support.impair import UdpImpairProxy
from tests.support.tcp_stall import TcpStallProxy

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]
WRONG_PIN = "sha256:" + "00" * 32


async def ls(opts: str, url: str) -> subprocess.CompletedProcess:
    return await trio.run_process([*QUICFS, "ls", "-o", opts, url], capture_stdout=True,
                                  capture_stderr=True, check=False)


async def test_wrong_pin_is_final_and_no_tcp_is_tried(samba, gateway):
    """A certificate that fails the user's pin never becomes a TCP session: not by
    default with a pin, and not even when fallback=tcp allows TCP otherwise."""
    proxy = TcpStallProxy(("127.0.0.1", samba.port))
    async with trio.open_nursery() as n:
        tcp_port = await n.start(proxy.run)
        base = (f"port={tcp_port},quic_port={gateway.port},fingerprint={WRONG_PIN},"
                f"username={samba.username},password={samba.password}")
        for extra in ("", ",fallback=tcp", ",seal"):
            proc = await ls(base + extra, "//127.0.0.1/plain")
            assert proc.returncode == 1, proc.stderr
            assert one_line_error(proc) == (
                f"quicfs: certificate of 127.0.0.1:{gateway.port} does not match the pinned "
                "fingerprint"), extra
        n.cancel_scope.cancel()
    assert proxy.accepted == 0


async def test_pin_without_seal_does_not_fall_back(samba):
    """UDP dropped, a pin given and no seal: no TCP connection; the error says how to
    allow one."""
    proxy = TcpStallProxy(("127.0.0.1", samba.port))
    silent = free_udp_port()
    async with trio.open_nursery() as n:
        tcp_port = await n.start(proxy.run)
        proc = await ls(f"port={tcp_port},quic_port={silent},connect_timeout=1,"
                        f"fingerprint={WRONG_PIN},username=u,password=p", "//127.0.0.1/plain")
        n.cancel_scope.cancel()
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: no QUIC answer from 127.0.0.1:{silent} within 1 s — is UDP {silent} "
        "blocked? (not trying TCP: fingerprint= was given; add seal or fallback=tcp to "
        "allow it)")
    assert proxy.accepted == 0


async def test_fallback_tcp_is_one_warning(samba, caplog):
    """With the user's leave (here fallback=tcp), a QUIC failure ends on TCP, said in one
    warning line."""
    silent = free_udp_port()
    opts = (f"port={samba.port},quic_port={silent},fingerprint={WRONG_PIN},fallback=tcp,"
            f"username={samba.username},password={samba.password}")
    with caplog.at_level(logging.INFO):
        async with quicfs.connect("//127.0.0.1/plain", opts) as s:
            assert s.transport == "tcp"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"transport=auto chose tcp to 127.0.0.1:{samba.port}: QUIC did not connect"), warnings


async def test_live_quic_mount_stays_on_quic_when_udp_is_dropped(samba, gateway):
    """UDP dropped for 5 s under a live QUIC connection: the reconnect waits for QUIC
    rather than moving the share to TCP (seal would allow TCP for a first connection;
    a reconnect keeps what the mount chose)."""
    proxy = UdpImpairProxy(("127.0.0.1", gateway.port))
    async with trio.open_nursery() as n:
        quic_port = await n.start(proxy.run)
        opts = (f"port={samba.port},quic_port={quic_port},fingerprint={gateway.fingerprint},"
                f"seal,username={samba.username},password={samba.password}")
        with trio.fail_after(60):
            async with quicfs.connect("//127.0.0.1/plain", opts) as s:
                assert s.transport == "quic"
                await s.write_file("stay.bin", b"x" * 1000)
                proxy.set_blackout(True)

                async def lift() -> None:
                    await trio.sleep(5)
                    proxy.set_blackout(False)

                n.start_soon(lift)
                assert await s.read_file("stay.bin") == b"x" * 1000
                assert s.uplink.stats.reconnects >= 1
                assert s.transport == "quic"
        n.cancel_scope.cancel()


@pytest.mark.serial  # bounds the connect: within 50 ms of TCP
async def test_auto_with_no_quic_server_is_as_fast_as_tcp(samba):
    """No QUIC server: TCP joins after its head start and wins; the race must not wait on
    the abandoned QUIC attempt (issue 20 item 18: 2.5 s where TCP was ready at 0.25 s).
    It returns within 50 ms of TCP being ready: the best of three (a loaded machine may
    stall any one) within the head start, a loopback connect, and 50 ms."""
    silent = free_udp_port()
    opts = (f"port={samba.port},quic_port={silent},username={samba.username},"
            f"password={samba.password}")
    from quicfs.options import parse_options
    from quicfs.transport.connect import TCP_HEADSTART, open_transport

    async with trio.open_nursery() as n:
        times = []
        for _ in range(3):
            started = trio.current_time()
            transport = await open_transport("127.0.0.1", None, parse_options(opts), n)
            times.append(trio.current_time() - started)
            assert transport.kind == "tcp"
            await transport.aclose()
        n.cancel_scope.cancel()
    print(f"auto connect to a TCP-only server: {[round(t, 3) for t in times]} s")
    assert max(times) < 1.0, times
    assert min(times) < TCP_HEADSTART + 0.05, times
