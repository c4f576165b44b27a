"""Linux metadata in EAs (WSL's $LX* layout) and what a stat makes of it."""

from __future__ import annotations

import os
import stat

from hypothesis import given
from hypothesis import strategies as st

from quicfs.client.open import FileStat
from quicfs.fs.attrs import posix_attrs
from quicfs.options import parse_options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import FileAttributes
from quicfs.smb2.ea import pack_eas, unpack_eas
from quicfs.smb2.lxmeta import LxMeta


def test_layout_is_wsls() -> None:
    # u32 little-endian ids and mode; $LXDEV a u64 with the major in its low half.
    eas = dict(lxmeta.encode(LxMeta(uid=1000, gid=0x01020304, mode=stat.S_IFCHR | 0o640,
                                    rdev=os.makedev(1, 3))))
    assert eas == {
        b"$LXUID": b"\xe8\x03\x00\x00",
        b"$LXGID": b"\x04\x03\x02\x01",
        b"$LXMOD": (stat.S_IFCHR | 0o640).to_bytes(4, "little"),
        b"$LXDEV": b"\x01\x00\x00\x00\x03\x00\x00\x00",
    }


u32 = st.integers(0, 2**32 - 1)
owner = st.integers(0, 2**32 - 2)  # (-1 is no owner)


@given(uid=st.none() | owner, gid=st.none() | owner, mode=st.none() | u32,
       rdev=st.none() | st.builds(os.makedev, st.integers(0, 4095), st.integers(0, 2**20 - 1)),
       acl=st.none() | st.binary(min_size=1, max_size=100),
       default_acl=st.none() | st.binary(min_size=1, max_size=100))
def test_round_trip_through_the_wire(uid: int | None, gid: int | None, mode: int | None,
                                     rdev: int | None, acl: bytes | None,
                                     default_acl: bytes | None) -> None:
    meta = LxMeta(uid=uid, gid=gid, mode=mode, rdev=rdev, acl=acl, default_acl=default_acl)
    entries = lxmeta.encode(meta)
    wire = unpack_eas(pack_eas(entries)) if entries else []
    assert lxmeta.decode(wire) == meta


def test_names_match_without_case_and_bad_lengths_are_ignored() -> None:
    meta = lxmeta.decode([(b"$lxuid", b"\x05\x00\x00\x00"), (b"$LXGID", b"\x01\x00"),
                          (b"user.other", b"x")])
    assert meta == LxMeta(uid=5)
    assert lxmeta.reserved(b"$LxMod") and not lxmeta.reserved(b"LXMOD")
    assert lxmeta.reserved(b"$TRUSTED.x") and lxmeta.reserved(b"$System.Posix_ACL_Access")
    assert not lxmeta.reserved(b"$system.other") and not lxmeta.reserved(b"trusted.x")
    assert lxmeta.trusted_name(b"$TRUSTED.Name") == b"Name"
    assert lxmeta.trusted_name(b"trusted.x") is None


def _file(**kw: object) -> FileStat:
    base: dict[str, object] = dict(name="f", size=0, allocation_size=0,
                                   attributes=FileAttributes.ARCHIVE, creation_ns=0,
                                   atime_ns=0, mtime_ns=0, ctime_ns=0)
    base.update(kw)
    return FileStat(**base)  # type: ignore[arg-type]


def test_attrs_from_metadata_and_fallbacks() -> None:
    opts = parse_options("uid=7,gid=8,file_mode=0644,dir_mode=0700,metadata,suid,dev")
    plain = posix_attrs(_file(), opts)
    assert (plain.mode, plain.uid, plain.gid) == (stat.S_IFREG | 0o644, 7, 8)
    # Only the mode kept: the owner still comes from the options.
    a = posix_attrs(_file(), opts, LxMeta(mode=stat.S_IFREG | 0o4751))
    assert (a.mode, a.uid, a.gid) == (stat.S_IFREG | 0o4751, 7, 8)
    fifo = posix_attrs(_file(), opts, LxMeta(uid=1, gid=2, mode=stat.S_IFIFO | 0o600))
    assert (fifo.mode, fifo.uid, fifo.gid, fifo.rdev) == (stat.S_IFIFO | 0o600, 1, 2, 0)
    dev = posix_attrs(_file(), opts, LxMeta(mode=stat.S_IFBLK | 0o600,
                                            rdev=os.makedev(8, 1)))
    assert (dev.mode, dev.rdev) == (stat.S_IFBLK | 0o600, os.makedev(8, 1))
    # The server's idea of what it is wins over $LXMOD's type: a directory stays one.
    d = posix_attrs(_file(attributes=FileAttributes.DIRECTORY), opts,
                    LxMeta(mode=stat.S_IFCHR | 0o751))
    assert d.mode == stat.S_IFDIR | 0o751
    # A file made read-only on the server cannot be written, whatever the mode says.
    ro = posix_attrs(_file(attributes=FileAttributes.READONLY), opts,
                     LxMeta(mode=stat.S_IFREG | 0o666))
    assert ro.mode == stat.S_IFREG | 0o444


def test_setuid_bits_and_device_nodes_only_where_trusted() -> None:
    """Anyone who may write to the share sets the EAs: a mount not told suid shows no
    setuid or setgid bit of a file, one not told dev no device node (a plain empty file,
    as the server holds); FIFOs, sockets and a directory's setgid bit stay."""
    setuid_root = LxMeta(uid=0, gid=0, mode=stat.S_IFREG | 0o6755)
    device = LxMeta(mode=stat.S_IFCHR | 0o666, rdev=os.makedev(1, 11))
    fifo = LxMeta(mode=stat.S_IFIFO | 0o600)
    shared = LxMeta(mode=stat.S_IFDIR | 0o2775)
    directory = _file(attributes=FileAttributes.DIRECTORY)
    for options in ("metadata", "metadata,suid,dev,nosuid,nodev", "metadata,allow_suid,nosuid"):
        opts = parse_options(options)
        assert posix_attrs(_file(), opts, setuid_root).mode == stat.S_IFREG | 0o755
        a = posix_attrs(_file(), opts, device)
        assert (a.mode, a.rdev) == (stat.S_IFREG | 0o666, 0)
        assert posix_attrs(_file(), opts, fifo).mode == stat.S_IFIFO | 0o600
        assert posix_attrs(directory, opts, shared).mode == stat.S_IFDIR | 0o2775
    for options in ("metadata,suid,dev", "metadata,allow_suid,allow_dev",
                    "metadata,nosuid,suid,dev"):
        opts = parse_options(options)
        assert posix_attrs(_file(), opts, setuid_root).mode == stat.S_IFREG | 0o6755
        a = posix_attrs(_file(), opts, device)
        assert (a.mode, a.rdev) == (stat.S_IFCHR | 0o666, os.makedev(1, 11))


def test_an_owner_of_minus_one_is_none() -> None:
    """(uid_t)-1 is no one's id: the mount's own owner is shown instead."""
    meta = lxmeta.decode([(b"$LXUID", b"\xff\xff\xff\xff"), (b"$LXGID", b"\xff\xff\xff\xff"),
                          (b"$LXMOD", (stat.S_IFREG | 0o640).to_bytes(4, "little"))])
    assert (meta.uid, meta.gid, meta.mode) == (None, None, stat.S_IFREG | 0o640)
    a = posix_attrs(_file(), parse_options("uid=7,gid=8,metadata"), meta)
    assert (a.uid, a.gid) == (7, 8)
