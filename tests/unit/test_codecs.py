"""Known-byte and round-trip tests of the command codecs (create, io, directory, info,
control), the FileId and the FILETIME helpers.

Request bytes below are written out by hand from the MS-SMB2 / MS-FSCC layouts, not produced
by the code under test; responses are assembled field by field the same way.
"""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quicfs.errors import MalformedError
from quicfs.smb2 import control, create, directory, info, io
from quicfs.smb2.constants import (
    AccessMask,
    CloseFlags,
    Command,
    CreateAction,
    CreateDisposition,
    CreateOptions,
    CreateResponseFlags,
    CtlCode,
    DurableHandleFlags,
    ErrorId,
    FileAttributes,
    FileInfoClass,
    FileSystemAttributes,
    FsInfoClass,
    HeaderFlags,
    ImpersonationLevel,
    InfoType,
    IoctlFlags,
    LeaseBreakFlags,
    LeaseFlags,
    LeaseState,
    LockFlags,
    OplockLevel,
    QueryDirectoryFlags,
    ShareAccess,
)
from quicfs.smb2.fileid import FileId
from quicfs.smb2.filetime import EPOCH_DELTA, filetime_to_ns, ns_to_filetime
from quicfs.smb2.header import Header

FID = FileId(1, 2)
FID_BYTES = bytes.fromhex("0100000000000000 0200000000000000")
KEY = bytes(range(16))
GUID = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
GUID_LE = bytes.fromhex("67452301 ab89 efcd 0123 456789abcdef")


def response(command: Command, body: bytes, status: int = 0) -> bytes:
    """A whole response message: a real header, then ``body`` at offset 64."""
    header = Header(command=command, message_id=7, status=status, credits=1,
                    flags=HeaderFlags.SERVER_TO_REDIR)
    return header.pack() + body


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------ FileId, FILETIME
def test_file_id() -> None:
    assert FID.pack() == FID_BYTES
    related = FileId.related()
    assert related.pack() == b"\xff" * 16
    assert related.is_related and not FID.is_related


def test_filetime() -> None:
    assert filetime_to_ns(EPOCH_DELTA) == 0
    # 2024-01-01T00:00:00Z is 1_704_067_200 s after the Unix epoch.
    assert ns_to_filetime(1_704_067_200 * 10**9) == 133_485_408_000_000_000
    assert filetime_to_ns(133_485_408_000_000_000) == 1_704_067_200 * 10**9
    assert ns_to_filetime(150) == EPOCH_DELTA + 1  # rounds down to the 100 ns tick
    assert filetime_to_ns(0) < 0


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_filetime_round_trip(ft: int) -> None:
    assert ns_to_filetime(filetime_to_ns(ft)) == ft


# --------------------------------------------------------------------------- CREATE
def test_create_request_plain() -> None:
    req = create.CreateRequest(
        name="dir\\f", desired_access=AccessMask.GENERIC_READ,
        file_attributes=FileAttributes.NORMAL, share_access=ShareAccess.READ | ShareAccess.WRITE,
        disposition=CreateDisposition.OPEN_IF, options=CreateOptions.NON_DIRECTORY_FILE,
    )
    assert req.command == Command.CREATE
    assert req.pack() == h(
        "3900 00 00 02000000"  # StructureSize 57, SecurityFlags, oplock, impersonation
        "0000000000000000 0000000000000000"  # SmbCreateFlags, Reserved
        "00000080 80000000 03000000 03000000 40000000"  # access, attrs, share, disp, opts
        "7800 0a00 00000000 00000000"  # NameOffset 120, NameLength 10, no contexts
        "6400 6900 7200 5c00 6600"  # "dir\f"
    )


def test_create_request_root_without_contexts_keeps_one_buffer_byte() -> None:
    body = create.CreateRequest(name="").pack()
    assert len(body) == 57
    assert body[44:48] == h("7800 0000")


def test_create_request_with_contexts() -> None:
    req = create.CreateRequest(
        name="", desired_access=AccessMask.FILE_READ_ATTRIBUTES,
        disposition=CreateDisposition.OPEN, options=CreateOptions.DIRECTORY_FILE,
        oplock_level=OplockLevel.NONE, impersonation=ImpersonationLevel.IMPERSONATION,
        contexts=[create.QueryMaximalAccessRequest(), create.QueryOnDiskId()],
    )
    assert req.pack() == h(
        "3900 00 00 02000000 0000000000000000 0000000000000000"
        "80000000 00000000 07000000 01000000 01000000"
        "7800 0000 78000000 2c000000"  # contexts at 120, 44 bytes
        # MxAc: Next 24, NameOffset 16, NameLength 4, DataOffset 0, DataLength 0, pad to 8
        "18000000 1000 0400 0000 0000 00000000 4d784163 00000000"
        # QFid: last, no padding after it
        "00000000 1000 0400 0000 0000 00000000 51466964"
    )


def test_create_request_name_with_contexts_is_padded() -> None:
    req = create.CreateRequest(name="ab", contexts=[create.QueryOnDiskId()])
    body = req.pack()
    # name (4 bytes) padded to 8: contexts at 120 + 8.
    assert body[44:56] == h("7800 0400 80000000 14000000")
    assert body[56:64] == h("6100 6200 00000000")


def test_create_request_rejects_leading_backslash() -> None:
    with pytest.raises(ValueError):
        create.CreateRequest(name="\\x")


def test_durable_v2_context() -> None:
    ctx = create.DurableHandleRequestV2(timeout=60000, persistent=True, create_guid=GUID)
    assert ctx.pack() == h("60ea0000 02000000 0000000000000000") + GUID_LE
    chain = create.pack_create_contexts([ctx])
    assert chain == h(
        "00000000 1000 0400 0000 1800 20000000" "44483251 00000000"
    ) + ctx.pack()


def test_durable_reconnect_v2_context() -> None:
    ctx = create.DurableHandleReconnectV2(file_id=FID, create_guid=GUID)
    assert ctx.name == b"DH2C"
    assert ctx.pack() == FID_BYTES + GUID_LE + h("00000000")


def test_lease_v2_context() -> None:
    ctx = create.LeaseRequestV2(lease_key=KEY, state=LeaseState.READ_CACHING
                                | LeaseState.HANDLE_CACHING, epoch=1)
    assert ctx.pack() == KEY + h("03000000 00000000 0000000000000000") + bytes(16) + h(
        "0100 0000")
    parent = create.LeaseRequestV2(lease_key=KEY, state=LeaseState.READ_CACHING,
                                   parent_lease_key=b"\x11" * 16)
    assert parent.pack()[20:24] == h("04000000")  # PARENT_LEASE_KEY_SET
    assert len(parent.pack()) == 52
    with pytest.raises(ValueError):
        create.LeaseRequestV2(lease_key=b"short", state=LeaseState.NONE)


def test_context_chain_alignment() -> None:
    chain = create.pack_create_contexts([
        create.DurableHandleRequestV2(create_guid=GUID),
        create.LeaseRequestV2(lease_key=KEY, state=LeaseState.READ_CACHING),
        create.QueryMaximalAccessRequest(timestamp=5),
    ])
    # DH2Q: 24 + 32 = 56 bytes; RqLs: 24 + 52 = 76 -> 80; MxAc: 24 + 8.
    assert struct.unpack_from("<I", chain, 0)[0] == 56
    assert struct.unpack_from("<I", chain, 56)[0] == 80
    assert struct.unpack_from("<I", chain, 136)[0] == 0
    assert len(chain) == 136 + 32
    # The same chain read back with the response decoders.
    parsed = create.unpack_create_contexts(chain)
    assert isinstance(parsed[0], create.DurableHandleResponseV2)
    assert isinstance(parsed[1], create.LeaseResponseV2)
    assert parsed[1].lease_key == KEY
    assert isinstance(parsed[2], create.MaximalAccessResponse)


def _create_response_body(contexts: bytes) -> bytes:
    fixed = struct.pack(
        "<HBBIQQQQQQII", 89, 0xFF, 0, 2, 11, 12, 13, 14, 4096, 100, 0x20, 0,
    ) + FID_BYTES
    offset = 64 + 88 if contexts else 0
    return fixed + struct.pack("<II", offset, len(contexts)) + contexts


def test_create_response_by_hand() -> None:
    mxac = h("20000000 1000 0400 0000 1800 08000000 4d784163 00000000"
             "00000000 ff011f00")
    lease = (h("50000000 1000 0400 0000 1800 34000000 52714c73 00000000") + KEY
             + h("07000000 02000000 0000000000000000") + bytes(16) + h("0300 0000")
             + bytes(4))
    dh2q = h("20000000 1000 0400 0000 1800 08000000 44483251 00000000"
             "10270000 00000000")
    qfid = h("38000000 1000 0400 0000 1800 20000000 51466964 00000000"
             "2a00000000000000 0700000000000000") + bytes(16)
    unknown = h("00000000 1000 0400 0000 1800 03000000 58795a77 00000000 616263")
    msg = response(Command.CREATE, _create_response_body(mxac + lease + dh2q + qfid + unknown))
    resp = create.CreateResponse.unpack(msg)
    assert resp.oplock_level == OplockLevel.LEASE
    assert resp.create_action == CreateAction.CREATED
    assert (resp.creation_time, resp.last_access_time, resp.last_write_time,
            resp.change_time) == (11, 12, 13, 14)
    assert resp.allocation_size == 4096 and resp.end_of_file == 100
    assert resp.file_attributes == FileAttributes.ARCHIVE
    assert resp.file_id == FID
    assert resp.flags == CreateResponseFlags.NONE
    mx = resp.context(create.MaximalAccessResponse)
    assert mx is not None and mx.query_status == 0 and mx.maximal_access == 0x001F01FF
    ls = resp.context(create.LeaseResponseV2)
    assert ls == create.LeaseResponseV2(KEY, LeaseState(7), LeaseFlags.BREAK_IN_PROGRESS,
                                        bytes(16), 3)
    dh = resp.context(create.DurableHandleResponseV2)
    assert dh == create.DurableHandleResponseV2(10000, DurableHandleFlags.NONE)
    qf = resp.context(create.OnDiskIdResponse)
    assert qf == create.OnDiskIdResponse(42, 7)
    assert resp.contexts[-1] == create.RawCreateContext(b"XyZw", b"abc")
    assert len(resp.contexts) == 5


def test_create_response_lease_v1_by_length() -> None:
    lease = h("00000000 1000 0400 0000 1800 20000000 52714c73 00000000") + KEY + h(
        "01000000 00000000 0000000000000000")
    resp = create.CreateResponse.unpack(response(Command.CREATE, _create_response_body(lease)))
    assert resp.contexts == (create.LeaseResponseV1(KEY, LeaseState.READ_CACHING,
                                                    LeaseFlags.NONE),)


def test_create_response_without_contexts() -> None:
    resp = create.CreateResponse.unpack(response(Command.CREATE, _create_response_body(b"")))
    assert resp.contexts == ()
    assert resp.context(create.LeaseResponseV2) is None


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],  # data runs past the chain
    lambda b: b[:4] + h("0300") + b[6:],  # NameOffset inside the record header
    lambda b: h("04000000") + b[4:],  # Next not 8-aligned
    lambda b: h("08000000") + b[4:],  # Next smaller than a record header
    lambda b: h("40000000") + b[4:],  # Next past the end
])
def test_create_contexts_malformed(mutate) -> None:  # type: ignore[no-untyped-def]
    good = h("00000000 1000 0400 0000 1800 08000000 4d784163 00000000 00000000 ff011f00")
    assert create.unpack_create_contexts(good)
    with pytest.raises(MalformedError):
        create.unpack_create_contexts(mutate(good))


def test_create_response_bad_structure_size() -> None:
    body = bytearray(_create_response_body(b""))
    body[0] = 88
    with pytest.raises(MalformedError):
        create.CreateResponse.unpack(response(Command.CREATE, bytes(body)))


def test_create_response_round_trip() -> None:
    resp = create.CreateResponse(
        OplockLevel.LEASE, CreateResponseFlags.REPARSEPOINT, CreateAction.OPENED, 1, 2, 3, 4,
        8192, 5000, FileAttributes.DIRECTORY, FileId(9, 10),
        (create.MaximalAccessResponse(0, AccessMask(0x1F01FF)),
         create.LeaseResponseV2(KEY, LeaseState(3), LeaseFlags.NONE, b"\x01" * 16, 4),
         create.DurableHandleResponseV2(0, DurableHandleFlags.PERSISTENT),
         create.DurableHandleResponse(),
         create.LeaseResponseV1(KEY, LeaseState(1), LeaseFlags.NONE),
         create.OnDiskIdResponse(1, 2),
         create.RawCreateContext(b"ABCD", b"xyz")),
    )
    assert create.CreateResponse.unpack(response(Command.CREATE, resp.pack())) == resp


# ---------------------------------------------------------------------- CLOSE, FLUSH
def test_close() -> None:
    req = io.CloseRequest(file_id=FID, flags=CloseFlags.POSTQUERY_ATTRIB)
    assert req.pack() == h("1800 0100 00000000") + FID_BYTES
    body = h("3c00 0100 00000000") + struct.pack("<QQQQQQI", 1, 2, 3, 4, 4096, 10, 0x80)
    resp = io.CloseResponse.unpack(response(Command.CLOSE, body))
    assert resp == io.CloseResponse(CloseFlags.POSTQUERY_ATTRIB, 1, 2, 3, 4, 4096, 10,
                                    FileAttributes.NORMAL)
    assert resp.has_attributes
    assert io.CloseResponse.unpack(response(Command.CLOSE, resp.pack())) == resp


def test_flush() -> None:
    assert io.FlushRequest(file_id=FID).pack() == h("1800 0000 00000000") + FID_BYTES
    assert io.FlushResponse.unpack(response(Command.FLUSH, h("0400 0000"))) == io.FlushResponse()
    with pytest.raises(MalformedError):
        io.FlushResponse.unpack(response(Command.FLUSH, h("0400")))


# ------------------------------------------------------------------------------ READ
def test_read_request() -> None:
    req = io.ReadRequest(file_id=FID, offset=4096, length=65536)
    assert req.payload_size == 65536
    assert req.pack() == h(
        "3100 50 00 00000100 0010000000000000"
    ) + FID_BYTES + h("00000000 00000000 00000000 0000 0000 00")


def test_read_response_data_at_80() -> None:
    msg = response(Command.READ, h("1100 50 00 05000000 00000000 00000000") + b"hello")
    resp = io.ReadResponse.unpack(msg)
    assert isinstance(resp.data, memoryview)
    assert resp.data == b"hello"
    assert resp.data.obj is msg  # a view into the message, not a copy


def test_read_response_padded_data() -> None:
    msg = response(Command.READ, h("1100 58 00 03000000 00000000 00000000") + bytes(8) + b"xyz")
    assert io.ReadResponse.unpack(msg).data == b"xyz"


@pytest.mark.parametrize("body", [
    h("1100 50 00 06000000 00000000 00000000") + b"hello",  # length past the end
    h("1100 ff 00 01000000 00000000 00000000") + b"hello",  # offset past the end
    h("1100 10 00 05000000 00000000 00000000") + b"hello",  # offset inside the header
    h("1000 50 00 05000000 00000000 00000000") + b"hello",  # StructureSize
    h("1100 50 00 05000000"),  # truncated
])
def test_read_response_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        io.ReadResponse.unpack(response(Command.READ, body))


def test_read_response_empty_and_round_trip() -> None:
    msg = response(Command.READ, h("1100 00 00 00000000 00000000 00000000"))
    assert io.ReadResponse.unpack(msg).data == b""
    resp = io.ReadResponse(memoryview(b"abc" * 100), 7)
    assert io.ReadResponse.unpack(response(Command.READ, resp.pack())) == resp


# ----------------------------------------------------------------------------- WRITE
def test_write_request() -> None:
    req = io.WriteRequest(file_id=FID, offset=10, data=b"abc")
    assert req.payload_size == 3
    assert req.pack() == h("3100 7000 03000000 0a00000000000000") + FID_BYTES + h(
        "00000000 00000000 0000 0000 00000000 616263")
    assert len(io.WriteRequest(file_id=FID, offset=0, data=b"").pack()) == 49


def test_write_response() -> None:
    body = h("1100 0000 03000000 00000000 0000 0000")
    assert io.WriteResponse.unpack(response(Command.WRITE, body)) == io.WriteResponse(3, 0)
    assert io.WriteResponse(3, 0).pack() == body


# ------------------------------------------------------------------------------ LOCK
def test_lock_request() -> None:
    req = io.LockRequest(
        file_id=FID,
        locks=[io.LockElement(0, 100, LockFlags.EXCLUSIVE_LOCK | LockFlags.FAIL_IMMEDIATELY),
               io.LockElement(200, 1, LockFlags.UNLOCK)],
        lock_sequence_number=3, lock_sequence_index=5,
    )
    assert req.pack() == h("3000 0200 53000000") + FID_BYTES + h(
        "0000000000000000 6400000000000000 12000000 00000000"
        "c800000000000000 0100000000000000 04000000 00000000")
    assert io.LockResponse.unpack(response(Command.LOCK, h("0400 0000"))) == io.LockResponse()
    with pytest.raises(ValueError):
        io.LockRequest(file_id=FID, locks=[])


# ------------------------------------------------------------------- QUERY_DIRECTORY
def test_query_directory_request() -> None:
    req = directory.QueryDirectoryRequest(file_id=FID, flags=QueryDirectoryFlags.RESTART_SCANS)
    assert req.payload_size == 65536
    assert req.pack() == h("2100 25 01 00000000") + FID_BYTES + h("6000 0200 00000100 2a00")


def _id_both_entry(nxt: int, name: str, file_id: int, attrs: int, eof: int,
                   short: str = "") -> bytes:
    """FileIdBothDirectoryInformation written out field by field (MS-FSCC 2.4.17)."""
    n = name.encode("utf-16-le")
    s = short.encode("utf-16-le")
    entry = (
        struct.pack("<II", nxt, 0)  # NextEntryOffset, FileIndex
        + struct.pack("<QQQQ", 1, 2, 3, 4)  # times
        + struct.pack("<QQ", eof, (eof + 4095) // 4096 * 4096)
        + struct.pack("<III", attrs, len(n), 0)  # attributes, FileNameLength, EaSize
        + struct.pack("<BB", len(s), 0) + s.ljust(24, b"\0")  # short name
        + struct.pack("<HQ", 0, file_id)  # Reserved2, FileId
        + n
    )
    assert len(entry) == 104 + len(n)
    return entry


def test_directory_buffer_three_entries() -> None:
    dot = _id_both_entry(112, ".", 5, 0x10, 0)  # 104 + 2 = 106 -> 112
    dotdot = _id_both_entry(112, "..", 2, 0x10, 0)  # 104 + 4 = 108 -> 112
    f = _id_both_entry(0, "file.txt", 77, 0x20, 1234, short="FILE.TXT")
    buf = dot + bytes(6) + dotdot + bytes(4) + f
    msg = response(Command.QUERY_DIRECTORY, struct.pack("<HHI", 9, 72, len(buf)) + buf)
    resp = directory.QueryDirectoryResponse.unpack(msg)
    entries = resp.entries(FileInfoClass.ID_BOTH_DIRECTORY)
    assert [e.name for e in entries] == [".", "..", "file.txt"]
    assert [e.file_id for e in entries] == [5, 2, 77]
    assert entries[0].is_dir and not entries[2].is_dir
    last = entries[2]
    assert (last.creation_time, last.last_access_time, last.last_write_time,
            last.change_time) == (1, 2, 3, 4)
    assert last.end_of_file == 1234 and last.allocation_size == 4096
    assert last.short_name == "FILE.TXT" and last.ea_size == 0
    assert directory.pack_directory_entries(entries, FileInfoClass.ID_BOTH_DIRECTORY) == buf


def test_directory_id_full_and_plain() -> None:
    n = "x".encode("utf-16-le")
    full = struct.pack("<IIQQQQQQIII", 0, 3, 1, 2, 3, 4, 5, 8, 0x20, len(n), 9) + struct.pack(
        "<IQ", 0, 99) + n
    [e] = directory.parse_directory_entries(full, FileInfoClass.ID_FULL_DIRECTORY)
    assert (e.name, e.file_index, e.end_of_file, e.ea_size, e.file_id) == ("x", 3, 5, 9, 99)
    plain = struct.pack("<IIQQQQQQII", 0, 0, 1, 2, 3, 4, 5, 8, 0x20, len(n)) + n
    [p] = directory.parse_directory_entries(plain, FileInfoClass.DIRECTORY)
    assert (p.name, p.end_of_file, p.file_id) == ("x", 5, 0)


@pytest.mark.parametrize("info_class", sorted(directory.SUPPORTED_CLASSES))
def test_directory_round_trip_every_class(info_class: int) -> None:
    entries = [
        directory.DirectoryEntry("a", 1),
        directory.DirectoryEntry("bcd.ef", 2),
        directory.DirectoryEntry("ü名", 3),
    ]
    if info_class != FileInfoClass.NAMES:
        entries = [
            directory.DirectoryEntry(e.name, e.file_index, 10, 20, 30, 40, 50, 64,
                                     FileAttributes.ARCHIVE,
                                     ea_size=0 if info_class == FileInfoClass.DIRECTORY else 4,
                                     file_id=7 if info_class in (
                                         FileInfoClass.ID_BOTH_DIRECTORY,
                                         FileInfoClass.ID_FULL_DIRECTORY) else 0,
                                     short_name="A~1" if info_class in (
                                         FileInfoClass.BOTH_DIRECTORY,
                                         FileInfoClass.ID_BOTH_DIRECTORY) else "")
            for e in entries
        ]
    buf = directory.pack_directory_entries(entries, info_class)
    assert directory.parse_directory_entries(buf, info_class) == entries


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-2],  # last name runs past the buffer
    lambda b: struct.pack("<I", 110) + b[4:],  # NextEntryOffset not 8-aligned
    lambda b: struct.pack("<I", 400) + b[4:],  # NextEntryOffset past the end
    lambda b: struct.pack("<I", 8) + b[4:],  # entry shorter than its fixed part
    lambda b: b[:60] + struct.pack("<I", 50) + b[64:],  # FileNameLength past the entry
    lambda b: b[:68] + b"\x19" + b[69:],  # ShortNameLength 25 > 24
    lambda b: b[:60] + struct.pack("<I", 1) + b[64:],  # odd UTF-16 length
])
def test_directory_malformed(mutate) -> None:  # type: ignore[no-untyped-def]
    good = (_id_both_entry(112, ".", 5, 0x10, 0) + bytes(6)
            + _id_both_entry(0, "..", 2, 0x10, 0))
    assert len(directory.parse_directory_entries(good, FileInfoClass.ID_BOTH_DIRECTORY)) == 2
    with pytest.raises(MalformedError):
        directory.parse_directory_entries(mutate(good), FileInfoClass.ID_BOTH_DIRECTORY)


def test_directory_empty_and_unknown_class() -> None:
    assert directory.parse_directory_entries(b"", FileInfoClass.ID_BOTH_DIRECTORY) == []
    with pytest.raises(ValueError):
        directory.parse_directory_entries(b"", FileInfoClass.BASIC)
    msg = response(Command.QUERY_DIRECTORY, h("0900 0000 00000000"))
    assert directory.QueryDirectoryResponse.unpack(msg).buffer == b""


# ------------------------------------------------------------------ QUERY/SET_INFO
def test_query_info_request() -> None:
    req = info.QueryInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.ALL,
                                file_id=FID, output_buffer_length=4096)
    assert req.payload_size == 4096
    assert req.pack() == h(
        "2900 01 12 00100000 0000 0000 00000000 00000000 00000000") + FID_BYTES + h("00")
    sec = info.QueryInfoRequest(InfoType.SECURITY, 0, FID, 8, additional_information=7,
                                input_buffer=b"\x01\x02")
    assert sec.pack() == h(
        "2900 03 00 08000000 6800 0000 02000000 07000000 00000000") + FID_BYTES + h("0102")
    assert info.QueryInfoRequest.of(FID, info.FileFsFullSizeInformation).pack()[2:4] == h(
        "0207")


def test_query_info_response() -> None:
    payload = struct.pack("<Q", 0x1234)
    msg = response(Command.QUERY_INFO, h("0900 4800 08000000") + payload)
    resp = info.QueryInfoResponse.unpack(msg)
    assert info.FileInternalInformation.unpack(resp.buffer).index_number == 0x1234
    for bad in (h("0900 4800 09000000") + payload, h("0900 3000 08000000") + payload,
                h("0800 4800 08000000") + payload):
        with pytest.raises(MalformedError):
            info.QueryInfoResponse.unpack(response(Command.QUERY_INFO, bad))


def test_set_info_request() -> None:
    req = info.SetInfoRequest.of(FID, info.FileEndOfFileInformation(1000))
    assert req.pack() == h("2100 01 14 08000000 6000 0000 00000000") + FID_BYTES + h(
        "e803000000000000")
    assert info.SetInfoResponse.unpack(response(Command.SET_INFO, h("0200"))) == (
        info.SetInfoResponse())


def test_rename_and_link() -> None:
    name = "new\\n".encode("utf-16-le")
    expected = h("01 00000000000000 0000000000000000 0a000000") + name + h("0000")
    assert info.FileRenameInformation(True, "new\\n").pack() == expected
    assert info.FileLinkInformation(True, "new\\n").pack() == expected
    assert info.FileRenameInformation.info_class == FileInfoClass.RENAME
    assert info.FileLinkInformation.info_class == FileInfoClass.LINK
    assert info.FileRenameInformation.unpack(expected) == info.FileRenameInformation(
        True, "new\\n")
    # One character still fills sizeof(FILE_RENAME_INFORMATION) = 24.
    assert len(info.FileRenameInformation(False, "a").pack()) == 24


def test_disposition_and_basic() -> None:
    assert info.FileDispositionInformation().pack() == h("01")
    assert info.FileDispositionInformation(False).pack() == h("00")
    basic = info.FileBasicInformation(last_write_time=5, file_attributes=FileAttributes.HIDDEN)
    assert basic.pack() == h("0000000000000000 0000000000000000 0500000000000000"
                             "0000000000000000 02000000 00000000")
    keep = info.FileBasicInformation(last_access_time=-1)
    assert keep.pack()[8:16] == b"\xff" * 8
    assert info.FileBasicInformation.unpack(keep.pack()) == keep


def test_all_information_by_hand() -> None:
    name = "\\dir\\file".encode("utf-16-le")
    data = (
        struct.pack("<qqqqII", 1, 2, 3, 4, 0x20, 0)  # Basic
        + struct.pack("<QQIBBH", 4096, 10, 1, 0, 0, 0)  # Standard
        + struct.pack("<Q", 555)  # Internal
        + struct.pack("<I", 0)  # EA
        + struct.pack("<I", 0x12019F)  # Access
        + struct.pack("<Q", 0)  # Position
        + struct.pack("<I", 0)  # Mode
        + struct.pack("<I", 0)  # Alignment
        + struct.pack("<I", len(name)) + name
    )
    a = info.FileAllInformation.unpack(data)
    assert a.basic == info.FileBasicInformation(1, 2, 3, 4, FileAttributes.ARCHIVE)
    assert a.standard == info.FileStandardInformation(4096, 10, 1, False, False)
    assert a.index_number == 555 and a.access_flags == 0x12019F
    assert a.name == "\\dir\\file" and not a.name_truncated
    assert (a.creation_time, a.last_access_time, a.last_write_time, a.change_time) == (
        1, 2, 3, 4)
    assert (a.allocation_size, a.end_of_file, a.number_of_links) == (4096, 10, 1)
    assert a.file_attributes == FileAttributes.ARCHIVE
    assert not a.delete_pending and not a.directory
    assert a.pack() == data
    # STATUS_BUFFER_OVERFLOW: the name cut short while FileNameLength is the full length.
    cut = info.FileAllInformation.unpack(data[:-5])
    assert cut.name == "\\dir\\f" and cut.name_truncated
    with pytest.raises(MalformedError):
        info.FileAllInformation.unpack(data[:99])


def test_fs_information_by_hand() -> None:
    attr = info.FileFsAttributeInformation.unpack(
        h("ff000700 ff000000 08000000") + "NTFS".encode("utf-16-le"))
    assert attr.file_system_name == "NTFS" and attr.maximum_component_name_length == 255
    assert attr.attributes & FileSystemAttributes.CASE_SENSITIVE_SEARCH
    vol = info.FileFsVolumeInformation.unpack(
        struct.pack("<QIIBB", 9, 0xABCD, 4, 1, 0) + "vv".encode("utf-16-le"))
    assert vol == info.FileFsVolumeInformation(9, 0xABCD, True, "vv")
    full = info.FileFsFullSizeInformation.unpack(struct.pack("<QQQII", 100, 50, 60, 8, 512))
    assert full.bytes_per_allocation_unit == 4096
    assert full.caller_available_allocation_units == 50
    size = info.FileFsSizeInformation.unpack(struct.pack("<QQII", 100, 50, 1, 4096))
    assert (size.total_allocation_units, size.bytes_per_allocation_unit) == (100, 4096)
    assert info.FileFsSizeInformation.info_class == FsInfoClass.SIZE
    with pytest.raises(MalformedError):
        info.FileFsAttributeInformation.unpack(h("ff000700 ff000000 0a000000") + b"N\0")


def test_network_open_and_standard() -> None:
    data = struct.pack("<qqqqQQII", 1, 2, 3, 4, 8192, 8000, 0x10, 0)
    n = info.FileNetworkOpenInformation.unpack(data)
    assert n == info.FileNetworkOpenInformation(1, 2, 3, 4, 8192, 8000,
                                                FileAttributes.DIRECTORY)
    assert n.pack() == data
    s = info.FileStandardInformation.unpack(struct.pack("<QQIBBH", 0, 0, 2, 1, 1, 0))
    assert s.number_of_links == 2 and s.delete_pending and s.directory


INFO_ROUND_TRIPS = [
    info.FileBasicInformation(1, 2, 3, 4, FileAttributes.READONLY),
    info.FileStandardInformation(4096, 100, 1, False, True),
    info.FileInternalInformation(2**63),
    info.FileNetworkOpenInformation(1, 2, 3, 4, 5, 6, FileAttributes.NORMAL),
    info.FileAttributeTagInformation(FileAttributes.REPARSE_POINT, 0xA000000C),
    info.FileAllInformation(info.FileBasicInformation(), info.FileStandardInformation(
        0, 0, 1, False, False), 1, 2, AccessMask.GENERIC_READ, 3, 4, 5, "\\x"),
    info.FileEndOfFileInformation(12345),
    info.FileAllocationInformation(4096),
    info.FileDispositionInformation(True),
    info.FileRenameInformation(True, "a\\b"),
    info.FileLinkInformation(False, "c"),
    info.FileFsSizeInformation(1, 2, 3, 4),
    info.FileFsFullSizeInformation(1, 2, 3, 4, 5),
    info.FileFsAttributeInformation(FileSystemAttributes.UNICODE_ON_DISK, 255, "ext4"),
    info.FileFsVolumeInformation(1, 2, False, "label"),
]


@pytest.mark.parametrize("value", INFO_ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_info_round_trip(value) -> None:  # type: ignore[no-untyped-def]
    assert type(value).unpack(value.pack()) == value


# --------------------------------------------------------------------------- control
def test_four_byte_bodies() -> None:
    for req in (control.EchoRequest(), control.CancelRequest(), control.LogoffRequest(),
                control.TreeDisconnectRequest()):
        assert req.pack() == h("0400 0000")
    assert control.CancelRequest.command == Command.CANCEL
    for resp_cls, cmd in ((control.EchoResponse, Command.ECHO),
                          (control.LogoffResponse, Command.LOGOFF),
                          (control.TreeDisconnectResponse, Command.TREE_DISCONNECT)):
        assert resp_cls.unpack(response(cmd, h("0400 0000"))) == resp_cls()
        with pytest.raises(MalformedError):
            resp_cls.unpack(response(cmd, h("0500 0000")))


def test_ioctl_request() -> None:
    req = control.IoctlRequest(ctl_code=CtlCode.SRV_REQUEST_RESUME_KEY, file_id=FID,
                               max_output_response=32)
    assert req.payload_size == 32
    assert req.pack() == h("3900 0000 78001400") + FID_BYTES + h(
        "00000000 00000000 00000000 00000000 00000000 20000000 01000000 00000000 00")
    with_input = control.IoctlRequest(CtlCode.PIPE_TRANSCEIVE, FID, b"abc", 1024)
    assert with_input.pack()[24:32] == h("78000000 03000000")
    assert with_input.pack()[56:] == b"abc"


def test_ioctl_response_by_hand() -> None:
    out = bytes(range(24))
    body = h("3100 0000 78001400") + FID_BYTES + h(
        "00000000 00000000 70000000 18000000 01000000 00000000") + out
    resp = control.IoctlResponse.unpack(response(Command.IOCTL, body))
    assert resp.ctl_code == CtlCode.SRV_REQUEST_RESUME_KEY
    assert resp.output == out and resp.input == b""
    assert resp.flags == IoctlFlags.IS_FSCTL and resp.file_id == FID
    bad = h("3100 0000 78001400") + FID_BYTES + h(
        "00000000 00000000 70000000 19000000 01000000 00000000") + out
    with pytest.raises(MalformedError):
        control.IoctlResponse.unpack(response(Command.IOCTL, bad))
    rt = control.IoctlResponse(0x1234, FID, IoctlFlags.IS_FSCTL, memoryview(b"out"),
                               memoryview(b"input"))
    assert control.IoctlResponse.unpack(response(Command.IOCTL, rt.pack())) == rt


def test_oplock_break() -> None:
    body = h("1800 01 00 00000000") + FID_BYTES
    note = control.parse_break(response(Command.OPLOCK_BREAK, body))
    assert note == control.OplockBreakNotification(OplockLevel.II, FID)
    ack = control.OplockBreakAcknowledgement(file_id=FID, oplock_level=OplockLevel.II)
    assert ack.command == Command.OPLOCK_BREAK
    assert ack.pack() == body
    resp = control.OplockBreakResponse.unpack(response(Command.OPLOCK_BREAK, body))
    assert resp == control.OplockBreakResponse(OplockLevel.II, FID)
    assert control.OplockBreakResponse.unpack(
        response(Command.OPLOCK_BREAK, resp.pack())) == resp


def test_lease_break() -> None:
    body = h("2c00 0200 01000000") + KEY + h("07000000 03000000 00000000 00000000 00000000")
    note = control.parse_break(response(Command.OPLOCK_BREAK, body))
    assert isinstance(note, control.LeaseBreakNotification)
    assert note.new_epoch == 2 and note.ack_required
    assert note.flags == LeaseBreakFlags.ACK_REQUIRED
    assert note.lease_key == KEY
    assert note.current_state == LeaseState(7) and note.new_state == LeaseState(3)
    assert note.pack() == body
    ack = control.LeaseBreakAcknowledgement(lease_key=KEY, lease_state=LeaseState(3))
    assert ack.pack() == h("2400 0000 00000000") + KEY + h("03000000 0000000000000000")
    resp = control.LeaseBreakResponse.unpack(response(Command.OPLOCK_BREAK, ack.pack()))
    assert resp == control.LeaseBreakResponse(KEY, LeaseState(3))
    assert control.LeaseBreakResponse.unpack(
        response(Command.OPLOCK_BREAK, resp.pack())) == resp
    with pytest.raises(MalformedError):
        control.parse_break(response(Command.OPLOCK_BREAK, ack.pack()))


def test_error_response_byte_count_zero() -> None:
    with_pad = control.ErrorResponse.unpack(response(Command.CREATE, h("0900 00 00 00000000 00")))
    without = control.ErrorResponse.unpack(response(Command.CREATE, h("0900 00 00 00000000")))
    assert with_pad == without == control.ErrorResponse(0, b"")
    with pytest.raises(MalformedError):
        control.ErrorResponse.unpack(response(Command.CREATE, h("0900 00 00 04000000 00")))


def test_error_response_buffer_too_small() -> None:
    err = control.ErrorResponse.unpack(response(Command.QUERY_INFO,
                                                h("0900 00 00 04000000 00100000")))
    assert err.required_size() == 4096


def _symlink_data(substitute: str, printed: str, unparsed: int, flags: int) -> bytes:
    s, p = substitute.encode("utf-16-le"), printed.encode("utf-16-le")
    paths = s + p
    return struct.pack("<IIIHHHHHHI", 24 + len(paths), 0x4C4D5953, 0xA000000C,
                       12 + len(paths), unparsed, 0, len(s), len(s), len(p), flags) + paths


def test_error_response_symlink_with_contexts() -> None:
    link = _symlink_data("..\\target", "..\\target", 8, 1)
    ctx = struct.pack("<II", len(link), 0) + link
    second = struct.pack("<II", 3, 0x72645253) + b"abc"
    data = ctx + bytes(-len(ctx) % 8) + second
    err = control.ErrorResponse.unpack(response(
        Command.CREATE, struct.pack("<HBBI", 9, 2, 0, len(data)) + data,
        status=0x8000002D))
    assert len(err.contexts) == 2
    assert err.contexts[1] == control.ErrorContext(ErrorId.SHARE_REDIRECT, b"abc")
    sym = err.symlink()
    assert sym.substitute_name == "..\\target" and sym.print_name == "..\\target"
    assert sym.relative and sym.unparsed_path_length == 8
    # Round trip through the packer.
    assert control.ErrorResponse.unpack(response(Command.CREATE, err.pack())) == err


def test_error_response_symlink_without_contexts() -> None:
    link = _symlink_data("\\??\\C:\\x", "C:\\x", 0, 0)
    err = control.ErrorResponse.unpack(
        response(Command.CREATE, struct.pack("<HBBI", 9, 0, 0, len(link)) + link))
    sym = err.symlink()
    assert sym.substitute_name == "\\??\\C:\\x" and not sym.relative
    with pytest.raises(MalformedError):
        control.SymlinkError.unpack(link[:-2])


# --------------------------------------------------------------- context round trips
CONTEXT_ROUND_TRIPS = [
    create.DurableHandleResponseV2(120000, DurableHandleFlags.PERSISTENT),
    create.LeaseResponseV1(KEY, LeaseState(5), LeaseFlags.BREAK_IN_PROGRESS, 0),
    create.LeaseResponseV2(KEY, LeaseState(7), LeaseFlags.PARENT_LEASE_KEY_SET, b"\x02" * 16, 9),
    create.MaximalAccessResponse(0, AccessMask(0x1F01FF)),
    create.OnDiskIdResponse(2**64 - 1, 3),
]


@pytest.mark.parametrize("ctx", CONTEXT_ROUND_TRIPS, ids=lambda c: type(c).__name__)
def test_context_round_trip(ctx) -> None:  # type: ignore[no-untyped-def]
    assert type(ctx).unpack(memoryview(ctx.pack())) == ctx
    assert create.unpack_create_contexts(create.pack_create_contexts([ctx])) == [ctx]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=16).filter(
    lambda n: n not in (b"DHnQ", b"DH2Q", b"RqLs", b"MxAc", b"QFid")),
    st.binary(max_size=40)), min_size=1, max_size=6))
def test_raw_context_chain_round_trip(items: list[tuple[bytes, bytes]]) -> None:
    ctxs = [create.RawCreateContext(n, d) for n, d in items]
    assert create.unpack_create_contexts(create.pack_create_contexts(ctxs)) == ctxs


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20).filter(
    lambda s: "\x00" not in s and all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)),
    min_size=1, max_size=8))
def test_directory_names_round_trip(names: list[str]) -> None:
    entries = [directory.DirectoryEntry(n, i, file_id=i) for i, n in enumerate(names)]
    buf = directory.pack_directory_entries(entries, FileInfoClass.ID_FULL_DIRECTORY)
    assert [e.name for e in directory.parse_directory_entries(
        buf, FileInfoClass.ID_FULL_DIRECTORY)] == names


def test_full_ea_information_round_trip():
    from quicfs.smb2.ea import pack_eas, unpack_eas

    items = [(b"colour", b"blue"), (b"b", bytes(range(7))), (b"last", b"x" * 300)]
    data = pack_eas(items)
    # Every entry but the last starts on a 4-byte boundary and names the next.
    assert int.from_bytes(data[0:4], "little") == 20  # 8 + "colour" + NUL + 4, padded
    assert unpack_eas(data) == items
    with pytest.raises(ValueError):
        pack_eas([(b"", b"v")])
    with pytest.raises(MalformedError):
        unpack_eas(data[:10])
