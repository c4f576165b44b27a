"""The server's QUIC driver (transport/quic/server_driver.py) following its client: a real
qh3 client and the gateway's engine in one process, on trio's virtual clock, the
driver's worker running between them."""

from __future__ import annotations

import ssl

import trio
from qh3._hazmat import pull_quic_header
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection

from quicfs.cert import write_self_signed
from quicfs.transport.quic.configuration import server_configuration
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.server_driver import ServerDriver

GATEWAY = ("127.0.0.1", 443)
#: The client's address before and after its NAT rebinds it.
OLD, NEW = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
#: The link: each way, a datagram takes a step of this long.
STEP = 0.001


async def test_a_nat_rebinding_in_a_download_is_followed_on_small_acks(
        tmp_path, autojump_clock) -> None:
    """The client's NAT rebinds in the middle of a download: from the new port come only
    its ACKs, some 40 bytes each, which buy three times that (RFC 9000 8.1) and never a
    full datagram. The PING that validates the new port (8.2) must still reach it, in a
    datagram of its own, ahead of the data held for the port. Before, qh3 put the PING in
    the first full datagram it made after the client's ACK, which waited behind the budget
    for ever, the client heard nothing and gave the connection up (the NAT test in
    test_gateway_hostile.py, 1 run in 5)."""
    files = write_self_signed("localhost", tmp_path)
    client = QuicConnection(configuration=QuicConfiguration(
        is_client=True, alpn_protocols=["smb"], server_name="localhost",
        verify_mode=ssl.CERT_NONE))
    client.connect(GATEWAY, now=trio.current_time())
    hello = [data for data, _ in client.datagrams_to_send(trio.current_time())]
    engine = Engine(configuration=server_configuration(str(files.cert), str(files.key)),
                    max_streams=(1, 0),
                    original_destination_connection_id=pull_quic_header(hello[0], 0, 8)[3])
    driver = ServerDriver(engine, peer=OLD, label="client", max_peer_streams=1)
    sent: list[tuple[bytes, object]] = []
    driver.send_datagrams = sent.extend  # type: ignore[assignment]
    driver.accept_handler = lambda stream: None
    for data in hello:
        driver.deliver(data, OLD)
    driver.take_input()

    at = OLD  # where the client's datagrams come from, as the gateway sees them
    came = {OLD: 0, NEW: 0}  # bytes from each address
    went = {OLD: 0, NEW: 0}  # bytes to each
    heard_after_rebind = 0  # bytes the client got after the rebinding

    async def step(rebind: bool = False) -> None:
        """One step of the link each way: what the gateway sent to where the client is
        reaches it (to the old port, once rebound: lost), and what the client has to
        send reaches the gateway from where its NAT says; ``rebind`` between the two."""
        nonlocal at, heard_after_rebind
        await trio.sleep(STEP)
        now = trio.current_time()
        out, sent[:] = list(sent), []
        for data, addr in out:
            went[addr] += len(data)  # type: ignore[index]
            if addr == at:
                client.receive_datagram(data, GATEWAY, now)
                heard_after_rebind += len(data) if at == NEW else 0
        while client.next_event() is not None:
            pass  # read: the client gives the gateway credit for more
        if rebind:
            at = NEW
        timer = client.get_timer()
        if timer is not None and timer <= now:
            client.handle_timer(now)
        datagrams = [data for data, _ in client.datagrams_to_send(now)]
        for data in datagrams:
            came[at] += len(data)
            driver.deliver(data, at)
        if datagrams:
            driver.take_input()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run)
        while not driver.handshake_done.is_set():
            await step()
        # A request, and a download far bigger than the congestion window.
        client.send_stream_data(0, b"read" * 30)
        while 0 not in driver.streams:
            await step()
        engine.send_stream_data(0, bytes(64 << 20))
        driver.kick()
        while went[OLD] < 1 << 20:
            await step()
        # The NAT rebinds: the client's ACKs come from its new port, what the gateway
        # sends the old one is lost.
        for n in range(200):
            await step(rebind=n == 0)
            # Never more than three times what came from there before it is validated.
            assert driver.path.moves or went[NEW] <= 3 * came[NEW], (went, came)
            if driver.path.moves:
                break
        assert driver.path.addr == NEW and driver.path.moves == 1, (
            f"not followed in 200 steps: the new port got {went[NEW]} bytes for the "
            f"{came[NEW]} it sent")
        # What waited for the validation goes there now, and the download goes on.
        for _ in range(100):
            await step()
        assert heard_after_rebind > 1 << 20
        nursery.cancel_scope.cancel()
