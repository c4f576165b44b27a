"""Every cipher and signing algorithm, negotiated with a real smbd and used for data.

Samba picks from its own list; restricting that list to one algorithm (a [global]
parameter) makes the negotiation land on it, and a transfer proves it was used.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import quicfs
from quicfs.smb2.constants import Cipher, SigningAlgorithm

CIPHERS = {
    "AES-128-GCM": Cipher.AES_128_GCM,
    "AES-128-CCM": Cipher.AES_128_CCM,
    "AES-256-GCM": Cipher.AES_256_GCM,
    "AES-256-CCM": Cipher.AES_256_CCM,
}
SIGNING = {
    "AES-128-GMAC": SigningAlgorithm.AES_GMAC,
    "AES-128-CMAC": SigningAlgorithm.AES_CMAC,
    "HMAC-SHA256": SigningAlgorithm.HMAC_SHA256,
}


def opts(server) -> str:
    return f"transport=tcp,username={server.username},password={server.password}"


@pytest.fixture(scope="module")
def per_algorithm_servers():
    """One smbd per cipher and per signing algorithm, started once for this module."""
    import tempfile
    from pathlib import Path

    from tests.support.samba import SambaError, SambaServer

    servers = {}
    try:
        for name in CIPHERS:
            servers[name] = SambaServer(
                Path(tempfile.mkdtemp(prefix="quicfs-smbd-")),
                extra_global={"server smb3 encryption algorithms": name},
            ).start()
        for name in SIGNING:
            servers[name] = SambaServer(
                Path(tempfile.mkdtemp(prefix="quicfs-smbd-")),
                extra_global={"server smb3 signing algorithms": name},
            ).start()
    except SambaError as exc:
        for s in servers.values():
            s.__exit__(None, None, None)
        pytest.fail(f"cannot start smbd: {exc}", pytrace=False)
    yield servers
    for s in servers.values():
        s.__exit__(None, None, None)


async def round_trip(share) -> None:
    data = os.urandom(3 * 1024 * 1024 + 11)
    await share.write_file("algo.bin", data)
    back = await share.read_file("algo.bin")
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("name", list(CIPHERS))
async def test_cipher_negotiated_and_used(per_algorithm_servers, name):
    server = per_algorithm_servers[name]
    async with quicfs.connect(server.url("sealed"), opts(server)) as share:
        assert share.conn.params.cipher == CIPHERS[name]
        assert share.tree.encrypt
        assert len(share.session.keys.encryption_key) == (32 if "256" in name else 16)
        sent: list[bytes] = []
        real = share.conn.transport.send_message

        async def spy(message):
            sent.append(bytes(message[:4]))
            await real(message)

        share.conn.transport.send_message = spy
        await round_trip(share)
        assert sent and set(sent) == {b"\xfdSMB"}


@pytest.mark.parametrize("name", list(SIGNING))
async def test_signing_algorithm_negotiated_and_used(per_algorithm_servers, name):
    server = per_algorithm_servers[name]
    async with quicfs.connect(server.url("signed"), opts(server)) as share:
        assert share.conn.params.signing_algorithm == SIGNING[name]
        assert share.session.signs and not share.tree.encrypt
        await round_trip(share)
