"""Each congestion controller carries SMB both ways through loss, end to end: `quicfs
gateway --cc` and the client's `cc=` (transport/quic/engine.py), in every pairing, over real
UDP through the impairment proxy to the real gateway and smbd. Their speed is measured in
bench/wan.py, never here."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

import quicfs
from tests.conftest import running_gateway
from tests.support.impair import UdpImpairProxy

SIZE = 3 * 1024 * 1024 + 4321


@pytest.fixture(scope="module")
def bbr_gateway(samba, tmp_path_factory):
    yield from running_gateway(tmp_path_factory.mktemp("gateway-bbr"), samba.port,
                               ["--cc", "bbr"])


@pytest.mark.parametrize("server, client", [("bbr", "bbr"), ("bbr", "cubic"),
                                            ("cubic", "bbr")])
async def test_a_file_goes_both_ways_through_loss(samba, gateway, bbr_gateway, server,
                                                  client):
    gw = bbr_gateway if server == "bbr" else gateway
    payload = os.urandom(SIZE)
    name = f"cc-{server}-{client}.bin"
    (samba.share_path("plain") / name).write_bytes(payload)
    proxy = UdpImpairProxy(("127.0.0.1", gw.port), loss=0.01, delay=0.002, seed=7)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            port = await n.start(proxy.run)
            url = f"//127.0.0.1:{port}/plain"
            async with quicfs.connect(url, gw.options(samba) + f",cc={client}") as s:
                got = await s.read_file(name)
                await s.write_file(f"back-{name}", got[::-1])
            n.cancel_scope.cancel()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    back = (samba.share_path("plain") / f"back-{name}").read_bytes()
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload[::-1]).digest()
    assert proxy.up.dropped > 0 and proxy.down.dropped > 0
