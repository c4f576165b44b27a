"""The server is not trusted: every response decoder and buffer parser of negotiate,
session_setup, tree, create, io, directory, info, control and the transform header, fed
random bytes or mutations of a valid message (truncation, bogus offsets, lengths, counts,
NextEntryOffset), may raise only MalformedError. (tests/unit/test_handshake_fuzz.py feeds
such messages to the client's handshake itself.)"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quicfs.errors import MalformedError
from quicfs.smb2 import control, create, crypto, directory, info, io
from quicfs.smb2.constants import (
    AccessMask,
    Cipher,
    CloseFlags,
    Command,
    CreateAction,
    CreateResponseFlags,
    DurableHandleFlags,
    ErrorId,
    FileAttributes,
    FileInfoClass,
    FileSystemAttributes,
    HeaderFlags,
    IoctlFlags,
    LeaseBreakFlags,
    LeaseFlags,
    LeaseState,
    OplockLevel,
)
from quicfs.smb2.fileid import FileId
from quicfs.smb2.header import Header
from quicfs.smb2.negotiate import NegotiateResponse
from quicfs.smb2.session_setup import SessionSetupResponse
from quicfs.smb2.transform import TransformHeader
from quicfs.smb2.tree import TreeConnectResponse
from tests.support.hostile_smb import (
    Behaviour,
    negotiate_response,
    session_setup_body,
    tree_connect_body,
)

#: Examples per decoder and way of making them (about 60 decoders, four ways): each run
#: draws afresh, so runs add up; 150 a run keeps the file near 20 s of CPU.
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEY = bytes(range(16))
FID = FileId(0x11, 0x22)


def _msg(command: Command, body: bytes) -> bytes:
    return Header(command=command, message_id=3, credits=1,
                  flags=HeaderFlags.SERVER_TO_REDIR).pack() + body


def _symlink() -> bytes:
    paths = "x\\y".encode("utf-16-le") * 2
    return struct.pack("<IIIHHHHHHI", 24 + len(paths), 0x4C4D5953, 0xA000000C,
                       12 + len(paths), 0, 0, 6, 6, 6, 1) + paths


_ENTRIES = [
    directory.DirectoryEntry(".", 0, 1, 2, 3, 4, 0, 0, FileAttributes.DIRECTORY, 0, 5, ""),
    directory.DirectoryEntry("..", 0, 1, 2, 3, 4, 0, 0, FileAttributes.DIRECTORY, 0, 2, ""),
    directory.DirectoryEntry("file.txt", 0, 1, 2, 3, 4, 10, 4096, FileAttributes.ARCHIVE,
                             0, 9, ""),
]


def _dir_buffer(info_class: int) -> bytes:
    return directory.pack_directory_entries(_ENTRIES, info_class)


# Valid whole messages, each with the decoder that reads it.
_CREATE = create.CreateResponse(
    OplockLevel.LEASE, CreateResponseFlags.NONE, CreateAction.CREATED, 1, 2, 3, 4, 4096, 10,
    FileAttributes.ARCHIVE, FID,
    (create.MaximalAccessResponse(0, AccessMask(0x1F01FF)),
     create.LeaseResponseV2(KEY, LeaseState(7), LeaseFlags.NONE, bytes(16), 1),
     create.DurableHandleResponseV2(60000, DurableHandleFlags.NONE),
     create.OnDiskIdResponse(5, 6),
     create.RawCreateContext(b"XyZw", b"abc")),
)
_ERROR = control.ErrorResponse(2, b"", (control.ErrorContext(ErrorId.DEFAULT, _symlink()),
                                        control.ErrorContext(ErrorId.SHARE_REDIRECT, b"abc")))

MESSAGES: list[tuple[str, Callable[[bytes], Any], bytes]] = [
    ("negotiate", NegotiateResponse.unpack, _msg(
        Command.NEGOTIATE, negotiate_response(Behaviour(), b"s" * 32))),
    ("session_setup", SessionSetupResponse.unpack, _msg(
        Command.SESSION_SETUP, session_setup_body(b"NTLMSSP\0" + bytes(range(40))))),
    ("tree_connect", TreeConnectResponse.unpack, _msg(
        Command.TREE_CONNECT, tree_connect_body())),
    ("create", create.CreateResponse.unpack, _msg(Command.CREATE, _CREATE.pack())),
    ("close", io.CloseResponse.unpack, _msg(Command.CLOSE, io.CloseResponse(
        CloseFlags.POSTQUERY_ATTRIB, 1, 2, 3, 4, 5, 6, FileAttributes.NORMAL).pack())),
    ("flush", io.FlushResponse.unpack, _msg(Command.FLUSH, io.FlushResponse().pack())),
    ("read", io.ReadResponse.unpack, _msg(Command.READ, io.ReadResponse(
        memoryview(b"0123456789"), 0).pack())),
    ("write", io.WriteResponse.unpack, _msg(Command.WRITE, io.WriteResponse(10).pack())),
    ("lock", io.LockResponse.unpack, _msg(Command.LOCK, io.LockResponse().pack())),
    ("query_directory", directory.QueryDirectoryResponse.unpack, _msg(
        Command.QUERY_DIRECTORY, directory.QueryDirectoryResponse(memoryview(
            _dir_buffer(FileInfoClass.ID_BOTH_DIRECTORY))).pack())),
    ("query_info", info.QueryInfoResponse.unpack, _msg(
        Command.QUERY_INFO, info.QueryInfoResponse(memoryview(struct.pack("<Q", 42))).pack())),
    ("set_info", info.SetInfoResponse.unpack, _msg(
        Command.SET_INFO, info.SetInfoResponse().pack())),
    ("echo", control.EchoResponse.unpack, _msg(Command.ECHO, control.EchoResponse().pack())),
    ("logoff", control.LogoffResponse.unpack, _msg(
        Command.LOGOFF, control.LogoffResponse().pack())),
    ("tree_disconnect", control.TreeDisconnectResponse.unpack, _msg(
        Command.TREE_DISCONNECT, control.TreeDisconnectResponse().pack())),
    ("ioctl", control.IoctlResponse.unpack, _msg(Command.IOCTL, control.IoctlResponse(
        0x00140078, FID, IoctlFlags.IS_FSCTL, memoryview(bytes(24)), memoryview(b"in")).pack())),
    ("oplock_break", control.OplockBreakNotification.unpack, _msg(
        Command.OPLOCK_BREAK, control.OplockBreakNotification(OplockLevel.II, FID).pack())),
    ("oplock_break_response", control.OplockBreakResponse.unpack, _msg(
        Command.OPLOCK_BREAK, control.OplockBreakResponse(OplockLevel.NONE, FID).pack())),
    ("lease_break", control.LeaseBreakNotification.unpack, _msg(
        Command.OPLOCK_BREAK, control.LeaseBreakNotification(
            2, LeaseBreakFlags.ACK_REQUIRED, KEY, LeaseState(7), LeaseState(1)).pack())),
    ("lease_break_response", control.LeaseBreakResponse.unpack, _msg(
        Command.OPLOCK_BREAK, control.LeaseBreakResponse(KEY, LeaseState(1)).pack())),
    ("parse_break", control.parse_break, _msg(
        Command.OPLOCK_BREAK, control.LeaseBreakNotification(
            1, LeaseBreakFlags.NONE, KEY, LeaseState(3), LeaseState(0)).pack())),
    ("error", control.ErrorResponse.unpack, _msg(Command.CREATE, _ERROR.pack())),
]


def _follow_up(value: Any) -> None:
    """Decode what a decoded response carries, as the client would."""
    if isinstance(value, directory.QueryDirectoryResponse):
        for cls in directory.SUPPORTED_CLASSES:
            _expect_malformed_only(directory.parse_directory_entries, value.buffer, cls)
    elif isinstance(value, info.QueryInfoResponse):
        for decoder in BUFFER_DECODERS.values():
            _expect_malformed_only(decoder, value.buffer)
    elif isinstance(value, control.ErrorResponse):
        _expect_malformed_only(lambda: value.symlink())
        _expect_malformed_only(lambda: value.required_size())


def _expect_malformed_only(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        value = fn(*args)
    except MalformedError:
        return None
    _follow_up(value)
    return value


# Decoders of a buffer (not a whole message), each with a valid sample.
BUFFER_DECODERS: dict[str, Callable[[Any], Any]] = {
    "create_contexts": create.unpack_create_contexts,
    "DH2Q": create.DurableHandleResponseV2.unpack,
    "lease_v1": create.LeaseResponseV1.unpack,
    "lease_v2": create.LeaseResponseV2.unpack,
    "MxAc": create.MaximalAccessResponse.unpack,
    "QFid": create.OnDiskIdResponse.unpack,
    "basic": info.FileBasicInformation.unpack,
    "standard": info.FileStandardInformation.unpack,
    "internal": info.FileInternalInformation.unpack,
    "network_open": info.FileNetworkOpenInformation.unpack,
    "attribute_tag": info.FileAttributeTagInformation.unpack,
    "all": info.FileAllInformation.unpack,
    "end_of_file": info.FileEndOfFileInformation.unpack,
    "allocation": info.FileAllocationInformation.unpack,
    "disposition": info.FileDispositionInformation.unpack,
    "rename": info.FileRenameInformation.unpack,
    "link": info.FileLinkInformation.unpack,
    "fs_size": info.FileFsSizeInformation.unpack,
    "fs_full_size": info.FileFsFullSizeInformation.unpack,
    "fs_attribute": info.FileFsAttributeInformation.unpack,
    "fs_volume": info.FileFsVolumeInformation.unpack,
    "symlink": control.SymlinkError.unpack,
    "transform": TransformHeader.unpack,
}
for _cls in directory.SUPPORTED_CLASSES:
    BUFFER_DECODERS[f"dir_{int(_cls)}"] = (
        lambda buf, c=_cls: directory.parse_directory_entries(buf, c)
    )

BUFFER_SAMPLES: dict[str, bytes] = {
    "create_contexts": create.pack_create_contexts(list(_CREATE.contexts)),
    "DH2Q": create.DurableHandleResponseV2(1, DurableHandleFlags.PERSISTENT).pack(),
    "lease_v1": create.LeaseResponseV1(KEY, LeaseState(1), LeaseFlags.NONE).pack(),
    "lease_v2": create.LeaseResponseV2(KEY, LeaseState(1), LeaseFlags.NONE).pack(),
    "MxAc": create.MaximalAccessResponse(0, AccessMask(1)).pack(),
    "QFid": create.OnDiskIdResponse(1, 2).pack(),
    "basic": info.FileBasicInformation(1, 2, 3, 4, FileAttributes.NORMAL).pack(),
    "standard": info.FileStandardInformation(1, 2, 3, False, True).pack(),
    "internal": info.FileInternalInformation(7).pack(),
    "network_open": info.FileNetworkOpenInformation(1, 2, 3, 4, 5, 6,
                                                    FileAttributes.NORMAL).pack(),
    "attribute_tag": info.FileAttributeTagInformation(FileAttributes.NORMAL, 0).pack(),
    "all": info.FileAllInformation(
        info.FileBasicInformation(), info.FileStandardInformation(0, 0, 1, False, False),
        1, 0, AccessMask(0x1F01FF), 0, 0, 0, "\\dir\\name").pack(),
    "end_of_file": info.FileEndOfFileInformation(5).pack(),
    "allocation": info.FileAllocationInformation(5).pack(),
    "disposition": info.FileDispositionInformation().pack(),
    "rename": info.FileRenameInformation(True, "a\\b").pack(),
    "link": info.FileLinkInformation(False, "a\\b").pack(),
    "fs_size": info.FileFsSizeInformation(1, 2, 3, 4).pack(),
    "fs_full_size": info.FileFsFullSizeInformation(1, 2, 3, 4, 5).pack(),
    "fs_attribute": info.FileFsAttributeInformation(FileSystemAttributes(7), 255,
                                                    "NTFS").pack(),
    "fs_volume": info.FileFsVolumeInformation(1, 2, True, "label").pack(),
    "symlink": _symlink(),
    "transform": crypto.encrypt_message(Cipher.AES_128_GCM, KEY, 0x77, _msg(
        Command.ECHO, control.EchoResponse().pack())),
}
for _cls in directory.SUPPORTED_CLASSES:
    BUFFER_SAMPLES[f"dir_{int(_cls)}"] = _dir_buffer(_cls)

# Values a hostile server would put into a length, offset, count or Next field.
_INTERESTING = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 23, 24, 63, 64, 65, 72, 79, 80, 88, 104,
                112, 120, 152, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated(draw: st.DrawFn, sample: bytes) -> bytes:
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "field", "byte", "extend", "splice"]))
        if kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif kind == "field" and data:
            size = draw(st.sampled_from([1, 2, 4, 8]))
            if len(data) < size:
                continue
            pos = draw(st.integers(0, len(data) - size))
            value = draw(st.one_of(st.sampled_from([*_INTERESTING, len(data), len(data) - pos]),
                                   st.integers(0, 2 ** (8 * size) - 1)))
            data[pos : pos + size] = (value % 2 ** (8 * size)).to_bytes(size, "little")
        elif kind == "byte" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
        elif kind == "extend":
            data += draw(st.binary(max_size=64))
        elif kind == "splice" and data:
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


_HEADER = MESSAGES[0][2][:64]


@pytest.mark.parametrize(("name", "decoder", "sample"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_valid_samples_decode(name: str, decoder: Callable[[bytes], Any], sample: bytes) -> None:
    assert _expect_malformed_only(decoder, sample) is not None


@pytest.mark.parametrize("name", sorted(BUFFER_SAMPLES))
def test_valid_buffer_samples_decode(name: str) -> None:
    assert _expect_malformed_only(BUFFER_DECODERS[name], BUFFER_SAMPLES[name]) is not None


@pytest.mark.parametrize(("name", "decoder", "sample"), MESSAGES, ids=[m[0] for m in MESSAGES])
@FUZZ
@given(data=st.data())
def test_message_decoders_random(name: str, decoder: Callable[[bytes], Any], sample: bytes,
                                 data: st.DataObject) -> None:
    raw = data.draw(st.one_of(
        st.binary(max_size=400),  # anything at all
        st.binary(max_size=300).map(lambda b: _HEADER + b),  # a header, then noise
        # the right StructureSize, then noise
        st.binary(max_size=300).map(lambda b: sample[:66] + b),
    ))
    _expect_malformed_only(decoder, raw)
    _expect_malformed_only(decoder, memoryview(raw))


@pytest.mark.parametrize(("name", "decoder", "sample"), MESSAGES, ids=[m[0] for m in MESSAGES])
@FUZZ
@given(data=st.data())
def test_message_decoders_mutated(name: str, decoder: Callable[[bytes], Any], sample: bytes,
                                  data: st.DataObject) -> None:
    _expect_malformed_only(decoder, data.draw(mutated(sample)))


@pytest.mark.parametrize("name", sorted(BUFFER_SAMPLES))
@FUZZ
@given(data=st.data())
def test_buffer_decoders_random(name: str, data: st.DataObject) -> None:
    _expect_malformed_only(BUFFER_DECODERS[name], data.draw(st.binary(max_size=400)))


@pytest.mark.parametrize("name", sorted(BUFFER_SAMPLES))
@FUZZ
@given(data=st.data())
def test_buffer_decoders_mutated(name: str, data: st.DataObject) -> None:
    raw = data.draw(mutated(BUFFER_SAMPLES[name]))
    _expect_malformed_only(BUFFER_DECODERS[name], raw)
    _expect_malformed_only(BUFFER_DECODERS[name], memoryview(raw))
