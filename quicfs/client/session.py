"""An authenticated SMB 3.1.1 session: SESSION_SETUP, keys, signing and encryption policy
(MS-SMB2 3.2.4.2.3, 3.2.5.3), and its renewal when the server expires it.

A server ends a session's authentication when the credentials behind it expire (Windows
and Samba: the Kerberos ticket's end time) and answers STATUS_NETWORK_SESSION_EXPIRED
until it is authenticated again (3.3.5.2.9). ``renew`` does that on the same connection,
with the same SessionId and fresh credentials (a new Authenticator: a ticket from the
cache, or the password the mount holds), once for every request that met the expiry
(3.2.4.2.3.1); the Tree then sends those requests again (tree.py). The session keeps its
keys: a re-authentication derives none (3.3.5.5.3), and its SESSION_SETUPs are signed
with the session's signing key (3.2.4.1.1), or encrypted where the session encrypts.
A renewal that failed for want of credentials (nothing sent) is tried again by the next
call, once they are back (``usable``: ``kinit`` in the morning brings the mount back).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import trio

from quicfs.client.auth import Authenticator, AuthError
from quicfs.client.connection import Connection, SessionKeys, copy_error
from quicfs.errors import ProtocolError, QuicfsError, SecurityError, SMBError, UsageError
from quicfs.options import Credentials
from quicfs.smb2 import crypto
from quicfs.smb2.constants import Cipher, SecurityMode, SessionFlags, SigningAlgorithm
from quicfs.smb2.control import LogoffRequest
from quicfs.smb2.session_setup import SessionSetupRequest, SessionSetupResponse, more_to_come
from quicfs.smb2.status import Status

#: The statuses by which a server refuses the credentials themselves.
_REFUSED = frozenset({Status.LOGON_FAILURE, Status.WRONG_PASSWORD, Status.NO_SUCH_USER,
                      Status.ACCOUNT_RESTRICTION, Status.INVALID_LOGON_HOURS,
                      Status.ACCESS_DENIED})
#: Those, and an account that cannot log in at all with them: not to be tried again.
_NOT_AGAIN = _REFUSED | {Status.PASSWORD_EXPIRED, Status.ACCOUNT_DISABLED}


def refuses_credentials(exc: BaseException) -> bool:
    """``exc`` is a server's refusal of the credentials themselves: another try with
    the same ones fails the same way, and counts toward locking the account out."""
    return isinstance(exc, SMBError) and exc.status in _NOT_AGAIN


class RenewalFailed(QuicfsError):
    """The server expired the session and did not take our credentials again: EACCES
    when it refused them, EKEYEXPIRED when we had none to give (the ticket is gone)."""

    errno = errno.EKEYEXPIRED


class Session:
    def __init__(self, conn: Connection, *, seal: bool = False,
                 credentials: Callable[[], Credentials] | None = None) -> None:
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
        #: Where a renewal gets its credentials (read again each time: a credentials
        #: file may have changed); None: the ones ``setup`` was given.
        self._credentials = credentials
        self._given = Credentials(None, None, None)
        #: Renewals done. A request notes it when sent: one that meets the expiry after
        #: a renewal it was sent before needs no other (``renew``).
        self.renewals = 0
        self._renewing: trio.Event | None = None
        #: Why the last renewal failed: the session is over (3.2.5.1.6), unless
        #: ``_relogin``: we had no credentials to give and sent nothing (``usable``).
        self._failed: RenewalFailed | None = None
        self._relogin = False

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
        self._given = Credentials(username, password, domain)
        auth = self._authenticator(self._given)
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
            if not more_to_come(reply.status):
                break
            preauth.update(bytes(reply.message))
            resp = SessionSetupResponse.unpack(reply.message)
            token = await trio.to_thread.run_sync(auth.step, resp.security_buffer)
        resp = SessionSetupResponse.unpack(reply.message)
        if resp.security_buffer and not auth.complete:
            await trio.to_thread.run_sync(auth.step, resp.security_buffer)
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

    def _authenticator(self, creds: Credentials) -> Authenticator:
        return Authenticator(username=creds.username, password=creds.password,
                             domain=creds.domain, server=self.conn.server_name)

    # ------------------------------------------------------------------ renewal
    async def usable(self) -> None:
        """Raise why the session is over, if a renewal failed, or bring it back first if
        it failed for want of credentials (no ticket, an unreadable credentials file):
        then nothing had been sent, the server still holds the session, merely expired
        (3.3.5.2.9), and a user who has run kinit since expects the mount to work again.
        That is one renewal more (``renew``: at most one attempt for this call, none
        while another runs); until the credentials are back it fails in the local check,
        with nothing sent. A session whose renewal the server refused stays over: it
        ended it (3.2.5.1.6), and trying the same credentials on every call would only
        lock the account out."""
        failed = self._failed
        if failed is None:
            return
        if not self._relogin:
            raise copy_error(failed)
        await self.renew(self.renewals)

    async def settled(self) -> None:
        """Wait while a renewal is under way: a request sent meanwhile would only meet
        the expiry too (3.2.4.2.3.1: no new requests until it succeeds)."""
        while self._renewing is not None:
            await self._renewing.wait()

    async def renew(self, seen: int) -> None:
        """The server answered STATUS_NETWORK_SESSION_EXPIRED to a request sent when
        ``renewals`` was ``seen`` (or a renewal had failed): return once the session is
        authenticated again, so that the request can be sent again (3.2.5.1.6). One
        renewal serves every request that met the expiry: the others wait for it.

        Raises RenewalFailed when the server did not take our credentials (and so does
        every later call, ``usable``, unless we had none to give); ConnectionLost when
        the connection went meanwhile (the Link's to bring back, with a new session)."""
        while self.renewals == seen:
            if self._renewing is not None:
                await self._renewing.wait()
                if self._failed is not None:
                    # The attempt waited for failed: its answer is ours too, not
                    # another attempt (no SESSION_SETUP per waiting caller).
                    raise copy_error(self._failed)
                continue
            if self._failed is not None and not self._relogin:
                raise copy_error(self._failed)
            done = self._renewing = trio.Event()
            # Whatever this attempt ends in is what its waiters get (ConnectionLost
            # leaves it None: the Link's, with a new session).
            self._failed = None
            sent: list[bool] = []
            try:
                await self._reauthenticate(sent)
            except (SMBError, AuthError, UsageError, SecurityError, ProtocolError) as exc:
                if self.conn.closed:
                    raise  # the connection's end, not a refusal: the Link's to bring back
                self._failed = self._failure(exc)
                # Nothing reached the server: it still holds the session, expired, and
                # the next call may try again once the credentials are back (``usable``).
                self._relogin = not sent
                raise copy_error(self._failed) from None
            finally:
                self._renewing = None
                done.set()
            self.renewals += 1

    async def _reauthenticate(self, sent: list[bool]) -> None:
        """SESSION_SETUP with our SessionId until the server says SUCCESS (3.2.4.2.3.1,
        3.2.5.3.2): signed with the session's key, or encrypted where the session
        encrypts (3.2.4.1.8 exempts only a binding SESSION_SETUP). The connection checks
        each response with the session's keys, as 3.2.5.1.3 asks of them."""
        conn = self.conn
        assert conn.params is not None
        creds = self._credentials() if self._credentials is not None else self._given
        auth = self._authenticator(creds)
        token = await trio.to_thread.run_sync(auth.step, conn.params.gss_token or None)
        while True:
            sent.append(True)
            [reply] = await conn.send_chain(
                [SessionSetupRequest.reauthentication(token or b"")], keys=self.keys,
                encrypt=self.encrypt_data)
            if reply.header.session_id != self.session_id:
                raise ProtocolError(
                    f"server answered the re-authentication of session {self.session_id:#x} "
                    f"for session {reply.header.session_id:#x}")
            more = more_to_come(reply.status)
            resp = SessionSetupResponse.unpack(reply.message)
            if not more:
                break
            token = await trio.to_thread.run_sync(auth.step, resp.security_buffer)
        if resp.security_buffer and not auth.complete:
            await trio.to_thread.run_sync(auth.step, resp.security_buffer)
        if resp.session_flags & (SessionFlags.IS_GUEST | SessionFlags.IS_NULL):
            raise SMBError(Status.LOGON_FAILURE, "server offered only a guest session")

    def _failure(self, exc: QuicfsError) -> RenewalFailed:
        server = self.conn.server_name
        if isinstance(exc, SMBError) and exc.status in _REFUSED:
            why = describe_logon_failure(exc, self.username)
        else:
            why = str(exc)
        failed = RenewalFailed(f"session on {server} expired and could not be renewed: {why}")
        if isinstance(exc, SMBError) and exc.status in _REFUSED:
            failed.errno = errno.EACCES
        return failed

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


__all__ = ["RenewalFailed", "Session", "UsageError",
           "describe_logon_failure"]
