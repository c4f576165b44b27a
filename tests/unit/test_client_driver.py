"""The client's QUIC driver (transport/quic/client_driver.py) at its edges."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import trio

from quicfs.transport.quic.client_driver import ClientDriver


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
