"""POSIX ACL values and the mode rules kept with them (quicfs/fs/posixacl.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quicfs.fs import posixacl
from quicfs.fs.posixacl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, Entry

BASE = [Entry(USER_OBJ, 6), Entry(GROUP_OBJ, 4), Entry(OTHER, 4)]
NAMED = [Entry(USER_OBJ, 7), Entry(USER, 6, 1000), Entry(GROUP_OBJ, 5), Entry(GROUP, 7, 50),
         Entry(MASK, 7), Entry(OTHER, 1)]


def test_the_xattr_layout_is_linuxs() -> None:
    # setfacl -m u:1000:rw,m::rw on a 0640 file: what the kernel hands FUSE.
    value = posixacl.encode([Entry(USER_OBJ, 6), Entry(USER, 6, 1000), Entry(GROUP_OBJ, 4),
                             Entry(MASK, 6), Entry(OTHER, 0)])
    assert value[:4] == b"\x02\x00\x00\x00"
    assert value[4:12] == struct.pack("<HHI", 0x01, 6, 0xFFFFFFFF)
    assert value[12:20] == struct.pack("<HHI", 0x02, 6, 1000)
    assert posixacl.decode(value)[1] == Entry(USER, 6, 1000)


@pytest.mark.parametrize("value", [b"", b"\x02\x00\x00\x00\x01", b"\x01\x00\x00\x00",
                                   b"\x02\x00\x00\x00" + struct.pack("<HHI", 0x40, 7, 0),
                                   b"\x02\x00\x00\x00" + struct.pack("<HHI", 0x01, 8, 0)])
def test_what_is_not_an_acl_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        posixacl.decode(value)


def test_mode_of() -> None:
    assert posixacl.mode_of(BASE) == (0o644, True)
    # The mask is what the group bits show.
    assert posixacl.mode_of(NAMED) == (0o771, False)


def test_chmod_moves_the_mask_not_the_group_entry() -> None:
    assert posixacl.chmod(NAMED, 0o640) == [
        Entry(USER_OBJ, 6), Entry(USER, 6, 1000), Entry(GROUP_OBJ, 5), Entry(GROUP, 7, 50),
        Entry(MASK, 4), Entry(OTHER, 0)]
    assert posixacl.chmod(BASE, 0o750) == [Entry(USER_OBJ, 7), Entry(GROUP_OBJ, 5),
                                           Entry(OTHER, 0)]


def test_create_cuts_list_and_mode_down_to_each_other() -> None:
    # A 0640 file under a default list granting more: the list shrinks to the mode.
    mode, acl = posixacl.create(NAMED, 0o100640)
    assert mode == 0o100640
    assert acl == [Entry(USER_OBJ, 6), Entry(USER, 6, 1000), Entry(GROUP_OBJ, 5),
                   Entry(GROUP, 7, 50), Entry(MASK, 4), Entry(OTHER, 0)]
    # ... and the mode to the list: a 0777 directory under a 0750-like list.
    mode, acl = posixacl.create([Entry(USER_OBJ, 7), Entry(GROUP_OBJ, 5), Entry(OTHER, 0)],
                                0o40777)
    assert (mode, acl) == (0o40750, None)


acls = st.lists(st.sampled_from([USER, GROUP]), max_size=4).flatmap(
    lambda named: st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 7),
                            st.lists(st.integers(0, 7), min_size=len(named),
                                     max_size=len(named)), st.integers(0, 7)).map(
        lambda p: [Entry(USER_OBJ, p[0]),
                   *[Entry(tag, perm, 1000 + i) for i, (tag, perm)
                     in enumerate(zip(named, p[3], strict=True)) if tag == USER],
                   Entry(GROUP_OBJ, p[1]),
                   *[Entry(tag, perm, 1000 + i) for i, (tag, perm)
                     in enumerate(zip(named, p[3], strict=True)) if tag == GROUP],
                   *([Entry(MASK, p[4])] if named else []),
                   Entry(OTHER, p[2])]))


@given(acls, st.integers(0, 0o7777))
def test_after_chmod_the_list_shows_the_mode(acl: list[Entry], mode: int) -> None:
    perms, equivalent = posixacl.mode_of(posixacl.chmod(acl, mode))
    assert perms == mode & 0o777
    assert equivalent == (len(acl) == 3)
    assert posixacl.decode(posixacl.encode(acl)) == acl


@given(acls, st.integers(0, 0o7777))
def test_a_created_file_has_no_more_than_asked_for(acl: list[Entry], mode: int) -> None:
    new_mode, access = posixacl.create(acl, mode)
    assert new_mode & ~0o777 == mode & ~0o777
    assert new_mode & 0o777 & ~mode == 0
    if access is None:
        assert len(acl) == 3
    else:
        assert posixacl.mode_of(access)[0] == new_mode & 0o777
