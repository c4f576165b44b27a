"""SMB over QUIC through our impairment proxy: loss, duplication, reordering, and NAT
rebinding every second. Content must arrive byte-exact; rebinding must not cost an SMB
reconnect."""

from __future__ import annotations

import hashlib
import os

import trio

import quicfs
from tests.support.impair import UdpImpairProxy


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def opts_via(proxy_port: int, samba, gateway) -> tuple[str, str]:
    url = f"//127.0.0.1:{proxy_port}/plain"
    # The certificate names 127.0.0.1; the pin makes the proxy's address irrelevant.
    return url, gateway.options(samba)


async def test_loss_duplication_reordering(samba, gateway):
    proxy = UdpImpairProxy(("127.0.0.1", gateway.port), loss=0.05, duplicate=0.02,
                           reorder=0.02, seed=7)
    async with trio.open_nursery() as n:
        port = await n.start(proxy.run)
        url, opts = opts_via(port, samba, gateway)
        data = os.urandom(6 * 1024 * 1024 + 3)
        with trio.fail_after(120):
            async with quicfs.connect(url, opts) as s:
                await s.write_file("lossy.bin", data)
                back = await s.read_file("lossy.bin")
        n.cancel_scope.cancel()
    assert sha(back) == sha(data)
    assert sha((samba.share_path("plain") / "lossy.bin").read_bytes()) == sha(data)
    for c in (proxy.up, proxy.down):
        assert c.dropped > 0 and c.duplicated > 0 and c.reordered > 0, (proxy.up, proxy.down)


async def test_nat_rebinding_every_second(samba, gateway):
    # Ten rebindings: more than the four paths qh3's core keeps for a connection.
    proxy = UdpImpairProxy(("127.0.0.1", gateway.port), rebind_every=0.5)
    async with trio.open_nursery() as n:
        port = await n.start(proxy.run)
        url, opts = opts_via(port, samba, gateway)
        data = os.urandom(4 * 1024 * 1024)
        with trio.fail_after(120):
            async with quicfs.connect(url, opts) as s:
                conn = s.conn
                rounds = 0
                # Keep transferring across several rebinds.
                while proxy.rebinds < 10:
                    await s.write_file(f"nat-{rounds}.bin", data)
                    assert sha(await s.read_file(f"nat-{rounds}.bin")) == sha(data)
                    rounds += 1
                    await trio.sleep(0.2)
                assert s.conn is conn and not conn.closed  # no SMB reconnect
        n.cancel_scope.cancel()
    assert proxy.rebinds >= 10
