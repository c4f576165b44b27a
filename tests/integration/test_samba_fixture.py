"""The fixture itself: smbd is really there, and the protected shares really protect."""

from __future__ import annotations

import os


def test_smbclient_round_trip_each_share(samba, tmp_path):
    data = os.urandom(100_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    for share in ("plain", "signed", "sealed"):
        proc = samba.smbclient(share, f"put {src} fixture.bin")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (samba.share_path(share) / "fixture.bin").read_bytes() == data
        out = tmp_path / f"{share}.out"
        proc = samba.smbclient(share, f"get fixture.bin {out}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert out.read_bytes() == data


def test_sealed_share_refuses_a_client_that_cannot_encrypt(samba):
    # SMB 2.1 has no encryption: the sealed share must turn it away, the plain one not.
    args = ("--option=client min protocol=SMB2_10", "--option=client max protocol=SMB2_10")
    assert samba.smbclient("plain", "ls", *args).returncode == 0
    proc = samba.smbclient("sealed", "ls", *args)
    assert proc.returncode != 0
    assert "ACCESS_DENIED" in proc.stdout + proc.stderr


async def test_server_requires_signing(samba):
    """Samba's signing requirement is global: the fixture's smbd sets it, so the ``signed``
    share (and every other) is served only to signing clients. Its NEGOTIATE says so."""
    import quicfs
    from quicfs.smb2.constants import SecurityMode

    async with quicfs.connect(samba.url("signed"), f"transport=tcp,username={samba.username},"
                              f"password={samba.password}") as s:
        assert s.conn.params.security_mode & SecurityMode.SIGNING_REQUIRED
        assert s.session.signs


def test_wrong_password_is_refused(samba):
    import subprocess

    proc = subprocess.run(
        ["smbclient", f"//{samba.host}/plain", "-p", str(samba.port), "-U",
         f"{samba.username}%wrong", "-c", "ls"], capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "LOGON_FAILURE" in proc.stdout + proc.stderr
