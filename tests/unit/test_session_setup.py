"""The sans-I/O part of a session's renewal (smb2/session_setup.py, issue 24 section 2)."""

from __future__ import annotations

import struct

import pytest

from quicfs.errors import SMBError
from quicfs.smb2.session_setup import SessionSetupRequest, more_to_come
from quicfs.smb2.status import Status
from quicfs.smb2.wire import HEADER_SIZE


def test_a_reauthentication_names_no_previous_session_and_binds_nothing():
    """3.2.4.2.3.1: the session's own SessionId goes in the header (the connection's);
    the body carries the token, Flags 0 (no BINDING: not a channel) and
    PreviousSessionId 0 (not a reconnect, which would end the session it renews)."""
    body = SessionSetupRequest.reauthentication(b"NTLMSSP\0token").pack()
    size, flags, _mode, _caps, _channel, offset, length, previous = struct.unpack_from(
        "<HBBIIHHQ", body)
    assert (size, flags, previous) == (25, 0, 0)
    assert (offset, length) == (HEADER_SIZE + 24, 13)
    assert body[24:] == b"NTLMSSP\0token"


def test_the_exchange_goes_on_for_more_processing_and_ends_at_success():
    assert more_to_come(Status.MORE_PROCESSING_REQUIRED) is True
    assert more_to_come(Status.SUCCESS) is False


@pytest.mark.parametrize("status", [Status.LOGON_FAILURE, Status.USER_SESSION_DELETED,
                                    Status.NETWORK_SESSION_EXPIRED, Status.ACCESS_DENIED])
def test_any_other_status_ends_the_exchange_with_it(status):
    with pytest.raises(SMBError) as caught:
        more_to_come(status)
    assert caught.value.status == status
