"""The FUSE edge's log: an error every call meets is one line, not one per call."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import pytest

from quicfs.errors import QuicfsError
from quicfs.fs import edge


class Refused(QuicfsError):
    errno = errno.EACCES


class Ops:
    def __init__(self) -> None:
        self.why = "session on HOST expired and could not be renewed: logon failure"

    @edge.fuse_errors
    async def getattr(self) -> None:
        raise Refused(self.why)


async def test_an_error_every_call_meets_is_logged_once_then_counted(monkeypatch, caplog):
    monkeypatch.setattr(edge, "_repeats", edge.RepeatFilter(window=60))
    caplog.set_level(logging.WARNING, logger="quicfs.fs")
    ops = Ops()
    for _ in range(500):
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.getattr()
        assert raised.value.errno == errno.EACCES
    assert caplog.messages == [f"getattr: {ops.why}"]
    ops.why = "another error"
    with pytest.raises(pyfuse3.FUSEError):
        await ops.getattr()
    assert caplog.messages[1:] == [
        "getattr: another error (and 499 more calls failed the same way)"]


async def test_the_same_error_is_logged_again_after_its_window(monkeypatch, caplog):
    monkeypatch.setattr(edge, "_repeats", edge.RepeatFilter(window=0))
    caplog.set_level(logging.WARNING, logger="quicfs.fs")
    ops = Ops()
    for _ in range(3):
        with pytest.raises(pyfuse3.FUSEError):
            await ops.getattr()
    assert caplog.messages == [f"getattr: {ops.why}"] * 3
