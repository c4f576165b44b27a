"""A real Samba AD DC ends an SMB session when the Kerberos ticket behind it ends (it
answers STATUS_NETWORK_SESSION_EXPIRED from then on): a mount and the library whose
cache can give a new ticket renew their sessions and go on as if nothing happened; a
command whose ticket was left to lapse says so in one line (issue 24 section 2); a
library session whose ticket lapsed fails so (nothing sent) until kinit, then works
again on the same session (relogin). The DC is tools/localdc.py's (``samba_dc``).

One test, one wait: all of it logs in with service tickets that end SHORT seconds after
they are made (tools/localdc.py ``service_ticket``). Where the cache keeps its
ticket-granting ticket, a renewal takes a new service ticket from it, as on any machine
once a session outlives its ticket (ten hours by default); where the cache holds the
service ticket alone, nothing can renew the session until kinit.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import trio

import quicfs
from quicfs.client.session import RenewalFailed
from tests.fuse.conftest import Mount
from tools.localdc import REALM

#: The first service tickets' life, in seconds; the sessions made with them end with
#: them. Long enough for the mount and `quicfs put` to log in on a loaded machine.
SHORT = 30
QUICFS = [sys.executable, "-m", "quicfs.cli.main"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow  # waits SHORT seconds for the tickets to end
def test_sessions_renew_themselves_when_the_ticket_ends(samba_dc, tmp_path, monkeypatch):
    renewed, lapsed = tmp_path / "renewed", tmp_path / "lapsed"
    # A library share whose ticket lapses, then comes back (kinit in the morning).
    relogin = tmp_path / "relogin"
    for cache in (renewed, lapsed, relogin):
        samba_dc.kinit(cache)
        samba_dc.service_ticket(cache, SHORT, alone=cache is not renewed)
    end = time.monotonic() + SHORT
    # This process (the library) and the mount it starts use the ticket that is renewed.
    for key, value in samba_dc.env(renewed).items():
        if key.startswith("KRB5"):
            monkeypatch.setenv(key, value)
    folder = samba_dc.share_path("kerb") / "renewal"
    folder.mkdir()
    folder.chmod(0o777)
    on_server = os.urandom(700_000)
    (folder / "on-server.bin").write_bytes(on_server)
    written = os.urandom(3 * 1024 * 1024 + 17)
    put = os.urandom(1024 * 1024 + 5)
    options = f"transport=tcp,username={samba_dc.username}"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Mount(mnt, samba_dc.url("kerb"), options) as path:
        mine = path / folder.name
        # A file written through the mount across the end: the first half now, sent.
        out = open(mine / "written.bin", "wb")  # held open across the wait
        out.write(written[:1_000_000])
        out.flush()
        os.fsync(out.fileno())
        # `quicfs put` whose ticket is left to lapse: its file opened, its data later.
        lapsing = subprocess.Popen(
            [*QUICFS, "put", "-o", options, "-", samba_dc.url("kerb", "renewal/lapsed.bin")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=samba_dc.env(lapsed))
        assert lapsing.stdin is not None and lapsing.stderr is not None
        lapsing.stdin.write(put[:100_000])
        lapsing.stdin.flush()

        def use(ccache) -> None:  # this process's ticket cache, read at each login
            monkeypatch.setenv("KRB5CCNAME", samba_dc.env(ccache)["KRB5CCNAME"])

        async def library() -> None:
            async with quicfs.connect(samba_dc.url("kerb"), options) as share:
                assert sha(await share.read_file("renewal/on-server.bin")) == sha(on_server)
                sid = share.session.session_id
                use(relogin)
                async with quicfs.connect(samba_dc.url("kerb"), options) as back:
                    use(renewed)
                    assert sha(await back.read_file("renewal/on-server.bin")) == sha(on_server)
                    back_sid = back.session.session_id
                    await trio.sleep(max(0.0, end - time.monotonic()) + 2)
                    # The session is over on the server: this read meets the expiry.
                    assert sha(await share.read_file("renewal/on-server.bin")) == sha(on_server)
                    assert share.session.renewals == 1 and share.session.session_id == sid
                    await share.write_file("renewal/library.bin", put)
                    # Relogin: its ticket lapsed, so the renewal fails (EKEYEXPIRED), and
                    # so does every call while it stays so, with nothing sent; after
                    # kinit the next call renews the same session and reads on.
                    use(relogin)
                    sent = None
                    for _ in range(4):
                        with pytest.raises(RenewalFailed, match="has expired") as caught:
                            await back.read_file("renewal/on-server.bin")
                        assert caught.value.errno == errno.EKEYEXPIRED
                        sent = sent if sent is not None else back.conn.messages_sent
                    assert back.conn.messages_sent == sent
                    samba_dc.kinit(relogin)
                    assert sha(await back.read_file("renewal/on-server.bin")) == sha(on_server)
                    assert back.session.renewals == 1 and back.session.session_id == back_sid
                    use(renewed)

        trio.run(library)
        out.write(written[1_000_000:])
        out.close()
        cat = subprocess.run(["cat", str(mine / "written.bin")], capture_output=True,
                             timeout=60)
        assert cat.returncode == 0, cat.stderr
        assert sha(cat.stdout) == sha(written)
        stats = subprocess.run([*QUICFS, "stats", "--json", str(path)], capture_output=True,
                               text=True, timeout=30)
        assert stats.returncode == 0, stats.stderr
        counters = json.loads(stats.stdout)
        assert counters["session_renewals"] == 1 and counters["reconnects"] == 0, counters

        lapsing.stdin.write(put[100_000:])
        lapsing.stdin.close()
        assert lapsing.wait(timeout=60) == 1
        assert lapsing.stderr.read().decode().splitlines() == [
            f"quicfs: session on {samba_dc.host} expired and could not be renewed: the "
            f"Kerberos ticket for alice@{REALM} in FILE:{lapsed} has expired: run kinit "
            f"alice@{REALM} again"]
    assert sha((folder / "written.bin").read_bytes()) == sha(written)
    assert sha((folder / "library.bin").read_bytes()) == sha(put)
