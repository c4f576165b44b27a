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
