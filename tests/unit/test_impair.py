"""The impairment proxy's delay keeps order: reordering is its own knob (``reorder``),
and a test that asks for delay alone must not get reordering too."""

from __future__ import annotations

import trio

from tests.support.impair import UdpImpairProxy


async def test_a_delay_keeps_the_order_of_back_to_back_datagrams():
    sink = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sink.bind(("127.0.0.1", 0))
    proxy = UdpImpairProxy(sink.getsockname(), delay=0.01)
    got: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await n.start(proxy.run)
            client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            for i in range(300):
                await client.sendto(i.to_bytes(2, "big"), ("127.0.0.1", port))
            while len(got) < 300:
                got.append(int.from_bytes(await sink.recv(16), "big"))
            n.cancel_scope.cancel()
    assert got == list(range(300))
    assert proxy.up.reordered == 0
