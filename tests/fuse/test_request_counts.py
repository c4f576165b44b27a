"""The mount's stats answer counts the SMB requests its operations send (issue 22):
bench/roundtrips.py reads them around each operation group."""

from __future__ import annotations

import os

import pytest

from quicfs import control


def counts(mnt) -> tuple[int, int]:
    s = control.ask(str(mnt), "stats")
    return s["smb_sends"], s["smb_messages_sent"]


def test_a_missing_name_costs_one_compound(mounted):
    os.stat(mounted)  # the root's attributes fresh: the lookup below needs nothing else
    before = counts(mounted)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted / "no-such-name")
    sends, messages = counts(mounted)
    # One LOOKUP: CREATE + QUERY_INFO + CLOSE in one related compound (one wait).
    assert (sends - before[0], messages - before[1]) == (1, 3)


def test_a_small_file_read_whole_costs_one_compound(mounted, samba, request):
    """open(2) of a file for reading asks for its first 64 KiB in the CREATE's compound
    (Share.open head): a small file read whole waits for that one round trip alone."""
    name = f"small-{request.node.callspec.id}"
    data = os.urandom(5000)
    on_server = samba.share_path("plain") / name
    on_server.write_bytes(data)
    st = on_server.parent.stat()
    os.chown(on_server, st.st_uid, st.st_gid)
    os.stat(mounted / name)  # looked up: the open below needs nothing else
    before = counts(mounted)
    assert (mounted / name).read_bytes() == data
    sends, messages = counts(mounted)
    assert (sends - before[0], messages - before[1]) == (1, 2)  # CREATE + READ
