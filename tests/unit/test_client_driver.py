"""The client's QUIC driver (transport/quic/client_driver.py) at its edges."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import trio
from qh3._hazmat import pull_quic_header

from quicfs.cert import write_self_signed
from quicfs.transport.quic.client_driver import ClientDriver
from quicfs.transport.quic.configuration import client_configuration, server_configuration
from quicfs.transport.quic.engine import Engine
from quicfs.transport.quic.tls import QuicTLSOptions, describe_failure


async def test_a_worker_that_waits_after_aclose_is_cancelled_not_a_bad_descriptor():
    """aclose() cancels the worker and closes its socket; a worker busy at that moment
    comes back to wait on a socket whose descriptor is -1. That wait must end as the
    cancellation it is (before: ValueError, and `quicfs probe` said 'internal error')."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.close()
    driver = SimpleNamespace(sock=sock)
    with trio.move_on_after(5) as scope:
        scope.cancel()
        await ClientDriver._wait_input(driver)  # type: ignore[arg-type]
    assert scope.cancelled_caught


async def test_a_handshake_the_server_answered_did_not_complete(tmp_path):
    """A handshake that timed out after the server answered is told as such, not as
    silence (before: "no QUIC answer ... is UDP 443 blocked?" for a server whose
    ServerHello had arrived: the message sent users after a firewall that was not
    there)."""
    files = write_self_signed("localhost", tmp_path)
    server_addr, label = ("127.0.0.1", 443), "127.0.0.1:443"

    def client() -> ClientDriver:
        quic = Engine(configuration=client_configuration(
            "localhost", QuicTLSOptions(fingerprint="sha256:" + "0" * 64)))
        quic.connect(server_addr, now=0.0)
        return ClientDriver(quic, sock=socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                            peer=server_addr, label=label)

    silent = client()
    silent.quic.datagrams_to_send(0.0)
    assert str(describe_failure(silent, label, 5.0)) == (
        "no QUIC answer from 127.0.0.1:443 within 5 s — is UDP 443 blocked?")

    answered = client()
    hello = [data for data, _ in answered.quic.datagrams_to_send(0.0)]
    server = Engine(configuration=server_configuration(str(files.cert), str(files.key)),
                    original_destination_connection_id=pull_quic_header(hello[0], 0, 8)[3])
    for data in hello:
        server.receive([data], ("127.0.0.1", 50000), 0.01)
    first = server.datagrams_to_send(0.01)[0][0]
    answered.quic.receive([first], server_addr, 0.02)  # the ServerHello; then nothing
    assert answered.quic.authenticated and not answered.quic.confirmed
    assert str(describe_failure(answered, label, 5.0)) == (
        "QUIC handshake with 127.0.0.1:443 did not complete within 5 s")
    for driver in (silent, answered):
        driver.sock.close()
