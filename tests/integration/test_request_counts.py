"""The SMB request counters of a share (`quicfs stats`: smb_sends, smb_messages_sent):
exact counts for known operations, over TCP and QUIC, and kept across a reconnect.

A send is what a caller waits on (a compound chain counts once, MS-SMB2 3.2.4.1.4); its
messages are the chain's members. bench/roundtrips.py divides them by the operations a
tool made, beside the round trips it waited (issue 22).
"""

from __future__ import annotations

import pytest

import quicfs


def source(transport: str, samba, gateway) -> tuple[str, str]:
    if transport == "quic":
        return gateway.url("plain"), gateway.options(samba)
    return samba.url("plain"), (f"transport=tcp,username={samba.username},"
                                f"password={samba.password}")


def counts(share) -> tuple[int, int]:
    """(sends, messages) as the mount's stats answer gives them."""
    snap = share.uplink.snapshot()
    return snap["smb_sends"], snap["smb_messages_sent"]


@pytest.mark.parametrize("transport", ["tcp", "quic"])
async def test_each_operation_counts_its_sends_and_messages(samba, gateway, transport):
    samba.share_path("plain").joinpath("counted.txt").write_bytes(b"x")
    async with quicfs.connect(*source(transport, samba, gateway)) as share:
        # NEGOTIATE, SESSION_SETUP twice (NTLM: negotiate, then authenticate), TREE_CONNECT.
        assert counts(share) == (4, 4)
        await share.conn.echo()
        assert counts(share) == (5, 5)
        # A stat is one related compound: CREATE + QUERY_INFO + CLOSE, missing or not.
        assert not await share.exists("no-such-name")
        assert counts(share) == (6, 8)
        assert await share.exists("counted.txt")
        assert counts(share) == (7, 11)


async def test_counts_survive_a_reconnect(samba, gateway):
    async with quicfs.connect(*source("tcp", samba, gateway)) as share:
        assert counts(share) == (4, 4)
        share.conn.abandon("test: connection declared dead")
        assert not await share.exists("no-such-name")
        assert share.uplink.stats.reconnects == 1
        # The first connection's 4 stay counted; the new one adds its own 4 sends
        # (NEGOTIATE, SESSION_SETUP x2, TREE_CONNECT) and the stat's compound of 3.
        assert counts(share) == (4 + 4 + 1, 4 + 4 + 3)
        assert share.conn.sends == 5
