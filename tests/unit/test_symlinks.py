"""mfsymlinks, the format cifs.ko uses for symbolic links on SMB shares."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quicfs.fs import symlinks


def test_known_layout():
    data = symlinks.encode(b"../target")
    assert len(data) == 1067
    head = b"XSym\n0009\n" + hashlib.md5(b"../target").hexdigest().encode() + b"\n../target\n"
    assert data.startswith(head)
    assert data[len(head):] == b" " * (1067 - len(head))
    assert symlinks.decode(data) == b"../target"


@given(st.binary(min_size=1, max_size=1024).filter(lambda t: b"\0" not in t))
def test_round_trip(target):
    assert symlinks.decode(symlinks.encode(target)) == target


def test_rejects_lookalikes():
    good = symlinks.encode(b"x")
    assert symlinks.decode(good[:-1]) is None
    assert symlinks.decode(b"YSym" + good[4:]) is None
    bad_md5 = bytearray(good)
    bad_md5[20] ^= 1
    assert symlinks.decode(bytes(bad_md5)) is None
    with pytest.raises(ValueError):
        symlinks.encode(b"")
    with pytest.raises(ValueError):
        symlinks.encode(b"x" * 1025)
