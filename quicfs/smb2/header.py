"""The SMB2 packet header (MS-SMB2 2.2.1) and compound chains (3.2.4.1.4).

Offsets inside an SMB2 body are counted from the start of its header, so decoders of
command bodies receive the whole message (header included) and start reading at byte 64.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from quicfs.smb2.constants import PROTOCOL_ID, Command, HeaderFlags
from quicfs.smb2.errors import MalformedError
from quicfs.smb2.wire import HEADER_SIZE

_SYNC = struct.Struct("<4sHHIHHIIQIIQ16s")
_ASYNC = struct.Struct("<4sHHIHHIIQQQ16s")
_FLAGS = struct.Struct("<I")
SIGNATURE_OFFSET = 48
SIGNATURE_SIZE = 16
assert _SYNC.size == HEADER_SIZE and _ASYNC.size == HEADER_SIZE

# Every message sent and received is packed or unpacked here: plain ints and a dict
# lookup instead of enum arithmetic (an IntFlag operation builds a new member each time).
_TO_REDIR = int(HeaderFlags.SERVER_TO_REDIR)
_ASYNC_FLAG = int(HeaderFlags.ASYNC_COMMAND)
_SIGNED = int(HeaderFlags.SIGNED)
_COMMANDS: dict[int, Command] = {int(c): c for c in Command}


@dataclass(frozen=True, slots=True)
class Header:
    """One SMB2 header. ``async_id`` is set only for the async form (2.2.1.1)."""

    command: Command | int
    message_id: int = 0
    credit_charge: int = 0
    # In requests of dialect 3.x this holds ChannelSequence; in responses the NTSTATUS.
    status: int = 0
    credits: int = 0  # CreditRequest in a request, CreditResponse in a response
    flags: int = 0  # HeaderFlags bits
    next_command: int = 0
    process_id: int = 0xFEFF
    tree_id: int = 0
    async_id: int | None = None
    session_id: int = 0
    signature: bytes = bytes(SIGNATURE_SIZE)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _TO_REDIR)

    @property
    def is_async(self) -> bool:
        return bool(self.flags & _ASYNC_FLAG)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & _SIGNED)

    def pack(self) -> bytes:
        if self.async_id is not None:
            return _ASYNC.pack(
                PROTOCOL_ID, HEADER_SIZE, self.credit_charge, self.status, int(self.command),
                self.credits, int(self.flags) | _ASYNC_FLAG, self.next_command,
                self.message_id, self.async_id, self.session_id, self.signature,
            )
        return _SYNC.pack(
            PROTOCOL_ID, HEADER_SIZE, self.credit_charge, self.status, int(self.command),
            self.credits, int(self.flags), self.next_command, self.message_id,
            self.process_id, self.tree_id, self.session_id, self.signature,
        )

    def with_(self, **changes: object) -> Header:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def unpack(cls, msg: bytes | bytearray | memoryview) -> Header:
        if len(msg) < HEADER_SIZE:
            raise MalformedError(f"SMB2 message of {len(msg)} bytes is shorter than a header")
        flags = _FLAGS.unpack_from(msg, 16)[0]
        if flags & _ASYNC_FLAG:
            (proto, size, charge, status, command, credits, flags, nxt, mid, async_id, sid,
             sig) = _ASYNC.unpack_from(msg)
            pid, tid = 0, 0
        else:
            (proto, size, charge, status, command, credits, flags, nxt, mid, pid, tid, sid,
             sig) = _SYNC.unpack_from(msg)
            async_id = None
        if proto != PROTOCOL_ID:
            raise MalformedError(f"bad SMB2 protocol id {proto.hex()}")
        if size != HEADER_SIZE:
            raise MalformedError(f"SMB2 header StructureSize {size}, expected 64")
        return cls(
            command=_COMMANDS.get(command, command), message_id=mid, credit_charge=charge,
            status=status, credits=credits, flags=flags, next_command=nxt, process_id=pid,
            tree_id=tid, async_id=async_id, session_id=sid, signature=sig,
        )


def split_compound(data: bytes | bytearray | memoryview) -> list[memoryview]:
    """Split a (possibly compounded) message into its member messages (3.2.5.1.9).

    Each NextCommand must point to an 8-byte aligned header inside the buffer and past the
    current one; anything else is a malformed chain.
    """
    view = memoryview(data)
    out: list[memoryview] = []
    pos = 0
    while True:
        if len(view) - pos < HEADER_SIZE:
            raise MalformedError("compound member shorter than an SMB2 header")
        nxt = int.from_bytes(view[pos + 20 : pos + 24], "little")
        if nxt == 0:
            out.append(view[pos:])
            return out
        if nxt < HEADER_SIZE or nxt % 8 or pos + nxt > len(view) - HEADER_SIZE:
            raise MalformedError(f"bad NextCommand {nxt} at offset {pos}")
        out.append(view[pos : pos + nxt])
        pos += nxt
        if len(out) > 64:
            raise MalformedError("compound chain longer than 64 messages")
