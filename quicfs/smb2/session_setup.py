"""SESSION_SETUP (MS-SMB2 2.2.5, 2.2.6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from quicfs.smb2.constants import Capabilities, Command, SecurityMode, SessionFlags
from quicfs.smb2.errors import MalformedError, SMBError
from quicfs.smb2.status import Status
from quicfs.smb2.wire import HEADER_SIZE, Reader

_FIXED = 24


@dataclass(frozen=True, slots=True)
class SessionSetupRequest:
    """2.2.5 SMB2 SESSION_SETUP Request: carries one SPNEGO token."""

    command: ClassVar[Command] = Command.SESSION_SETUP
    security_buffer: bytes
    security_mode: SecurityMode = SecurityMode.SIGNING_ENABLED
    capabilities: Capabilities = Capabilities.NONE
    binding: bool = False  # Flags SMB2_SESSION_FLAG_BINDING (multichannel)
    previous_session_id: int = 0

    @classmethod
    def reauthentication(cls, token: bytes) -> SessionSetupRequest:
        """A leg of re-authenticating a live session (3.2.4.2.3.1): the header carries
        the session's own SessionId and is signed with its Session.SigningKey (3.2.4.1.1)
        or sealed (3.2.4.1.8); PreviousSessionId is 0 and no BINDING flag: the server
        takes it as a re-authentication, not a new session or a channel (3.3.5.5)."""
        return cls(security_buffer=token)

    def pack(self) -> bytes:
        return struct.pack(
            "<HBBIIHHQ", _FIXED + 1, 0x01 if self.binding else 0, int(self.security_mode),
            int(self.capabilities), 0, HEADER_SIZE + _FIXED, len(self.security_buffer),
            self.previous_session_id,
        ) + self.security_buffer


@dataclass(frozen=True, slots=True)
class SessionSetupResponse:
    """2.2.6 SMB2 SESSION_SETUP Response."""

    session_flags: SessionFlags
    security_buffer: bytes

    @classmethod
    def unpack(cls, msg: bytes | memoryview) -> SessionSetupResponse:
        r = Reader(msg, HEADER_SIZE)
        if (size := r.u16()) != 9:
            raise MalformedError(f"SESSION_SETUP response StructureSize {size}, expected 9")
        flags = SessionFlags(r.u16() & 0x7)
        offset, length = r.u16(), r.u16()
        return cls(flags, bytes(r.slice(offset, length)) if length else b"")


def more_to_come(status: int) -> bool:
    """Whether a SESSION_SETUP exchange goes on after a response with ``status``:
    MORE_PROCESSING_REQUIRED asks for the next token, SUCCESS ends it (3.2.5.3.1 for a
    new session, 3.2.5.3.2 for a re-authentication); any other status ends it with that
    error, returned to whoever asked for the authentication."""
    if status == Status.MORE_PROCESSING_REQUIRED:
        return True
    if status != Status.SUCCESS:
        raise SMBError(status)
    return False
