"""A mount authenticated by a kinit ticket, no password given, over QUIC (through the
gateway) and over TCP, against the Samba AD DC of tools/localdc.py: what is written
through it reaches the server byte-exact, and what the server holds reads back so."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.fuse.conftest import Mount
from tests.integration.test_kerberos import where


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_a_mount_with_a_ticket_reads_and_writes_byte_exact(samba_dc, dc_gateway, tmp_path,
                                                           monkeypatch, transport):
    cache = tmp_path / "krb5cc"
    samba_dc.kinit(cache)
    # mount.quicfs, and the process that serves the mount, take them from here.
    for key in ("KRB5_CONFIG", "KRB5CCNAME"):
        monkeypatch.setenv(key, samba_dc.env(cache)[key])
    folder = samba_dc.share_path("kerb") / f"mount-{transport}"
    folder.mkdir()
    folder.chmod(0o777)
    on_server = os.urandom(1024 * 1024 + 3)
    (folder / "from-server.bin").write_bytes(on_server)
    written = os.urandom(3 * 1024 * 1024 + 11)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Mount(mnt, *where(transport, samba_dc, dc_gateway, "kerb")) as path:
        mine = path / folder.name
        assert (mine / "from-server.bin").read_bytes() == on_server
        (mine / "from-client.bin").write_bytes(written)
        assert hashlib.sha256((mine / "from-client.bin").read_bytes()).digest() == \
            hashlib.sha256(written).digest()
    assert (folder / "from-client.bin").read_bytes() == written
