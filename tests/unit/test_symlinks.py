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


# ---------------------------------------------------------------------- reparse points
def _link(print_name: str, substitute: str = "", *, unparsed: int = 0) -> object:
    from quicfs.smb2.control import SYMLINK_FLAG_RELATIVE, SymlinkError

    return SymlinkError(unparsed, substitute, print_name, SYMLINK_FLAG_RELATIVE, 0xA000000C)


def test_reparse_point_target_as_readlink_gives_it():
    assert symlinks.from_reparse(_link("d\\good.txt")) == b"d/good.txt"  # type: ignore[arg-type]
    assert symlinks.from_reparse(_link("", "..\\x")) == b"../x"  # type: ignore[arg-type]
    assert symlinks.from_reparse(_link("é" * 2047 + "x")) == "é".encode() * 2047 + b"x"  # type: ignore[arg-type]


@pytest.mark.parametrize(("link", "why"), [
    (_link("x" * 4096), "a target of 4096 bytes (at most 4095)"),
    (_link("a\0b"), "an empty target, or one with NUL"),
    (_link(""), "an empty target, or one with NUL"),
    (_link("t", unparsed=4), "the link is one of the name's directories, not the name"),
    (_link("\udc80"), "'utf-8' codec can't encode character '\\udc80' in position 0: "
                      "surrogates not allowed"),
])
def test_reparse_point_target_linux_cannot_hold(link: object, why: str):
    with pytest.raises(ValueError) as err:
        symlinks.from_reparse(link)  # type: ignore[arg-type]
    assert str(err.value) == why
