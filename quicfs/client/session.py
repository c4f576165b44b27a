"""An authenticated SMB 3.1.1 session: SESSION_SETUP, keys, signing and encryption policy
(MS-SMB2 3.2.4.2.3, 3.2.5.3)."""

from __future__ import annotations

import trio

from quicfs.client.auth import Authenticator
from quicfs.client.connection import Connection, SessionKeys
from quicfs.errors import ProtocolError, SecurityError, SMBError, UsageError
from quicfs.smb2 import crypto
from quicfs.smb2.constants import Cipher, SecurityMode, SessionFlags, SigningAlgorithm
from quicfs.smb2.control import LogoffRequest
from quicfs.smb2.session_setup import SessionSetupRequest, SessionSetupResponse
from quicfs.smb2.status import Status


class Session:
    def __init__(self, conn: Connection, *, seal: bool = False) -> None:
        assert conn.params is not None, "negotiate first"
        self.conn = conn
        #: What requests on this session go with: its id, and once SESSION_SETUP is done
        #: its keys. A value, made anew when they change (the connection keeps one).
        self.keys = SessionKeys(0)
        self.seal = seal
        self.encrypt_data = False
        self.is_guest = False
        self.signing_algorithm: SigningAlgorithm = conn.params.signing_algorithm
        self.cipher: Cipher | None = conn.params.cipher
        self.application_key = b""
        self.username = ""

    @property
    def session_id(self) -> int:
        return self.keys.session_id

    @property
    def signs(self) -> bool:
        return self.keys.signs

    async def setup(self, *, username: str | None, password: str | None,
                    domain: str | None, previous_session_id: int = 0) -> None:
        """Authenticate. After a reconnect, ``previous_session_id`` names the session
        the lost connection had, so the server lets it go and its durable opens may be
        reclaimed (3.2.4.2.3, 3.3.5.5.3)."""
        conn = self.conn
        assert conn.params is not None
        self.username = username or ""
        auth = Authenticator(username=username, password=password, domain=domain,
                             server=conn.server_name)
        preauth = conn.preauth.copy()
        token = await trio.to_thread.run_sync(auth.step, conn.params.gss_token or None)
        while True:
            sent: list[bytes] = []
            req = SessionSetupRequest(security_buffer=token or b"",
                                      security_mode=SecurityMode.SIGNING_ENABLED,
                                      previous_session_id=previous_session_id)
            [reply] = await conn.send_chain([req], keys=self.keys, message_hook=sent.append)
            preauth.update(sent[0])
            # Unsigned until the last response: no key exists before it (3.2.5.3.1).
            self.keys = SessionKeys(reply.header.session_id)
            if reply.status == Status.MORE_PROCESSING_REQUIRED:
                preauth.update(bytes(reply.message))
                resp = SessionSetupResponse.unpack(reply.message)
                token = await trio.to_thread.run_sync(auth.step, resp.security_buffer)
                continue
            if reply.status != Status.SUCCESS:
                raise SMBError(reply.status)
            resp = SessionSetupResponse.unpack(reply.message)
            if resp.security_buffer and not auth.complete:
                await trio.to_thread.run_sync(auth.step, resp.security_buffer)
            break
        self.is_guest = bool(resp.session_flags & (SessionFlags.IS_GUEST | SessionFlags.IS_NULL))
        if self.is_guest:
            # A guest session has no key to sign with: we asked for this user, not a guest.
            raise SMBError(Status.LOGON_FAILURE, "server offered only a guest session")
        derived = crypto.derive_keys_311(auth.session_key, preauth.value, self.cipher)
        # 3.2.5.3.1: the final SESSION_SETUP response is signed with the new key.
        if not reply.header.is_signed:
            raise SecurityError("final SESSION_SETUP response was not signed")
        crypto.verify(self.signing_algorithm, derived.signing_key, reply.message)
        # We always sign (when not encrypting): a response is then never taken unverified.
        self.keys = SessionKeys(self.session_id, self.signing_algorithm, derived.signing_key,
                                self.cipher, derived.encryption_key, derived.decryption_key)
        self.application_key = derived.application_key
        server_wants_encryption = bool(resp.session_flags & SessionFlags.ENCRYPT_DATA)
        if (self.seal or server_wants_encryption) and self.cipher is None:
            raise ProtocolError("encryption was asked for but the server offered no cipher")
        if conn.params.transport_security and not self.seal:
            self.encrypt_data = False
        else:
            self.encrypt_data = self.seal or server_wants_encryption
        conn.add_session(self.keys)

    async def logoff(self) -> None:
        if self.conn.closed or not self.session_id:
            return
        try:
            await self.conn.request(LogoffRequest(), keys=self.keys, encrypt=self.encrypt_data)
        finally:
            self.conn.remove_session(self.session_id)


def describe_logon_failure(exc: SMBError, username: str) -> str:
    if exc.status == Status.LOGON_FAILURE:
        return f"logon failure for user '{username}': wrong user name or password"
    return str(exc)


__all__ = ["Session", "UsageError", "describe_logon_failure"]
