"""A hostile SMB 3.1.1 server over TCP on loopback, good enough for a real mount.

Samba cannot be made to lie, so this server serves a small scripted tree and says what a
test tells it to: bad names, sizes, times, EAs and symlink files; a zero MaxReadSize; a
flood of lease breaks; a listing that never ends. Everything else is honest enough for
`mount.quicfs` with ``transport=tcp``: NEGOTIATE with the 3.1.1 contexts, SESSION_SETUP
with real NTLMv2 (pyspnego's acceptor, users from NTLM_USER_FILE), keys derived and every
response signed by the project's own code (quicfs/smb2/crypto.py, MS-SMB2 3.3.5.5.3),
TREE_CONNECT, CREATE, CLOSE, QUERY_INFO, QUERY_DIRECTORY, READ and ECHO. It is read-only
(writes are refused with STATUS_MEDIA_WRITE_PROTECTED) unless ``Behaviour.writable``: then
CREATE makes and truncates files, and WRITE, FLUSH and SET_INFO (end of file; times are
taken and forgotten) change them.

Sessions may expire as a Kerberos ticket's end makes Windows and Samba expire them
(MS-SMB2 3.3.5.2.9): after ``Behaviour.expire_every`` requests, or when the test calls
``expire_sessions()``, every request of the session is answered
STATUS_NETWORK_SESSION_EXPIRED until a SESSION_SETUP with its SessionId, signed with its
signing key, authenticates it again (3.3.5.5.3: the keys stay). Each re-authentication
is recorded in ``renewals``. A failed one ends the session, as Samba does.

The server runs trio in a thread of the test process, so a test can look at what the
client sent (``server.seen``) and change the tree between steps.
"""

from __future__ import annotations

import itertools
import os
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio

from quicfs.errors import ConnectionLost
from quicfs.smb2 import crypto
from quicfs.smb2.constants import (
    AccessMask,
    CloseFlags,
    Command,
    CreateAction,
    CreateDisposition,
    CreateOptions,
    CreateResponseFlags,
    Dialect,
    ErrorId,
    FileAttributes,
    FileInfoClass,
    FileSystemAttributes,
    FsInfoClass,
    HashAlgorithm,
    HeaderFlags,
    InfoType,
    LeaseBreakFlags,
    LeaseState,
    OplockLevel,
    QueryDirectoryFlags,
    SigningAlgorithm,
)
from quicfs.smb2.control import (
    SYMLINK_ERROR_TAG,
    SYMLINK_FLAG_RELATIVE,
    EchoResponse,
    ErrorContext,
    ErrorResponse,
    LeaseBreakNotification,
)
from quicfs.smb2.create import CreateResponse
from quicfs.smb2.directory import DirectoryEntry, QueryDirectoryResponse, pack_directory_entries
from quicfs.smb2.ea import pack_eas
from quicfs.smb2.fileid import FileId
from quicfs.smb2.filetime import EPOCH_DELTA
from quicfs.smb2.header import Header, split_compound
from quicfs.smb2.info import (
    FileAllInformation,
    FileBasicInformation,
    FileFsAttributeInformation,
    FileFsFullSizeInformation,
    FileStandardInformation,
    QueryInfoResponse,
)
from quicfs.smb2.io import CloseResponse, ReadResponse, WriteResponse
from quicfs.smb2.negotiate import (
    EncryptionContext,
    PreauthIntegrityContext,
    SigningContext,
    pack_contexts,
)
from quicfs.smb2.status import Status
from quicfs.smb2.wire import HEADER_SIZE, pad8
from quicfs.transport.framing import FramedStream

USER = "hostile"
PASSWORD = "hostile-pw"
SHARE = "share"
#: 2024-01-02 03:04:05 UTC as a FILETIME: every honest time in the tree.
TIME = EPOCH_DELTA + 1_704_164_645 * 10_000_000
U64 = 2**64
#: The ID_BOTH_DIRECTORY entry's FileNameLength (MS-FSCC 2.4.17) and fixed size.
_NAME_LENGTH_AT = 60
_ID_BOTH_FIXED = 104
#: The client went away: the connection's end, not the test server's fault.
_GONE = (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError)
_ERROR_BODY = struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"  # 2.2.2 with no ErrorData


@dataclass
class Node:
    """One file or directory. ``raw_name`` (UTF-16LE bytes, possibly invalid) replaces
    the encoded ``name`` in listings; sizes and times are the raw 64-bit fields sent."""

    name: str
    data: bytes = b""
    children: list[Node] | None = None
    raw_name: bytes | None = None
    size: int | None = None  # the EndOfFile sent (default: len(data)), taken mod 2^64
    times: int = TIME  # the four FILETIMEs sent, taken mod 2^64
    eas: bytes | None = None  # a raw FILE_FULL_EA_INFORMATION list
    file_id: int = 0  # IndexNumber / FileId of the listing (0: one of its own)
    #: A directory whose QUERY_DIRECTORY never answers NO_MORE_FILES: each page is new
    #: names, for ever (issue 20 item 6).
    endless: bool = False
    #: A reparse point: its CREATE is answered STATUS_STOPPED_ON_SYMLINK with this as
    #: the Symbolic Link Error Response (MS-SMB2 2.2.2.2.1), well formed or not.
    reparse: bytes | None = None
    #: A READ of it gets an interim STATUS_PENDING (2.2.1.1, 3.3.4.2) and never its
    #: final answer (issue 20 item 4).
    pending: bool = False

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def wire_name(self) -> bytes:
        return self.raw_name if self.raw_name is not None else self.name.encode("utf-16-le")


def file(name: str, data: bytes = b"", **kw: object) -> Node:
    return Node(name, data, **kw)  # type: ignore[arg-type]


def directory(name: str, *children: Node, **kw: object) -> Node:
    return Node(name, children=list(children), **kw)  # type: ignore[arg-type]


def eas(*items: tuple[bytes, bytes]) -> bytes:
    return pack_eas(list(items))


@dataclass
class Behaviour:
    """What the server does besides serving the tree."""

    max_read_size: int = 1 << 20
    max_write_size: int = 1 << 20
    max_transact_size: int = 1 << 20
    #: After the first CREATE of a file, this many lease breaks for keys never granted.
    lease_breaks: int = 0
    #: A session expires after this many requests since it was last authenticated
    #: (0: never). Checked at the start of a message, so a compound expires whole.
    expire_every: int = 0
    #: A re-authentication is refused with STATUS_LOGON_FAILURE, as when the password
    #: changed or the account was disabled since the session began.
    refuse_renewal: bool = False
    #: The first re-authentication's SESSION_SETUP is answered by closing the
    #: connection (the server lost in the middle of a renewal).
    drop_at_renewal: bool = False
    #: CREATE may make and truncate files; WRITE, FLUSH and SET_INFO are served.
    writable: bool = False


@dataclass
class Renewal:
    """One re-authentication of a session, as the server saw it."""

    session_id: int
    #: SESSION_SETUP requests it took (NTLM: two).
    legs: int = 0
    #: Whether every one of them was signed with the session's signing key.
    signed: bool = True
    #: "ok", or the status it failed with; "" while under way.
    outcome: str = ""


@dataclass
class _Session:
    preauth: crypto.PreauthIntegrity
    auth: object
    signing_key: bytes = b""
    #: Requests since the session was last authenticated.
    requests: int = 0
    expired: bool = False
    #: The re-authentication under way, and its acceptor.
    renewal: Renewal | None = None
    reauth: object = None


@dataclass
class _Open:
    node: Node
    path: str
    listed: bool = False
    pages: int = 0


@dataclass
class HostileServer:
    root: Node
    behaviour: Behaviour = field(default_factory=Behaviour)
    port: int = 0
    #: Commands received, by name; lease-break acknowledgements kept apart.
    seen: Counter[str] = field(default_factory=Counter)
    break_acks: int = 0
    errors: list[str] = field(default_factory=list)
    breaks_sent: int = 0
    renewals: list[Renewal] = field(default_factory=list)
    #: Requests answered STATUS_NETWORK_SESSION_EXPIRED.
    expired_answers: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._assign_ids(self.root)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._env_before: str | None = None
        fd, self._users = tempfile.mkstemp(prefix="hostile-ntlm-")
        os.close(fd)
        self.set_password(PASSWORD)
        #: Every session established, on any connection.
        self._sessions: list[_Session] = []
        #: The connections served, for :meth:`drop_connections`.
        self._connections: set[_Connection] = set()

    def _assign_ids(self, node: Node) -> None:
        if not node.file_id:
            node.file_id = 1000 + next(self._ids)
        for child in node.children or ():
            self._assign_ids(child)

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> HostileServer:
        # pyspnego's NTLM acceptor reads its users from the file this names.
        self._env_before = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = self._users
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        if not self._started.wait(10) or not self.port:
            raise RuntimeError(f"hostile SMB server did not start: {self.errors}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._scope is not None:
            try:
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(10)
        os.unlink(self._users)
        if self._env_before is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = self._env_before

    @property
    def url(self) -> str:
        return f"//127.0.0.1:{self.port}/{SHARE}"

    @property
    def options(self) -> str:
        return f"transport=tcp,username={USER},password={PASSWORD}"

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        try:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        except OSError as exc:
            self.errors.append(f"listen: {exc}")
            self._started.set()
            return
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve, listeners)
                self._started.set()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = _Connection(self, FramedStream(stream, kind="tcp", peer="client"))
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception as exc:  # a bug of the test server: make the test see it
            self.errors.append(f"{type(exc).__name__}: {exc}")
            raise

    def set_password(self, password: str) -> None:
        """The user's password from now on (the acceptor reads the file at each login)."""
        with open(self._users, "w") as f:
            f.write(f":{USER}:{password}\n")

    def drop_connections(self) -> None:
        """Every connection now open is closed at its next request, unanswered (a
        network that failed)."""
        for conn in self._connections:
            conn.drop = True

    def expire_sessions(self) -> None:
        """Expire every session now, as a ticket's end does (3.3.5.2.9)."""
        for session in self._sessions:
            session.expired = True

    # ------------------------------------------------------------------ the tree
    def add(self, node: Node) -> None:
        """Put ``node`` into the root directory of a running server."""
        self._assign_ids(node)
        assert self.root.children is not None
        self.root.children.append(node)

    def lookup(self, path: str) -> Node | None:
        node = self.root
        for part in (p for p in path.split("\\") if p):
            if not node.is_dir:
                return None
            found = [c for c in node.children or () if c.name == part]
            if not found:
                return None
            node = found[0]
        return node


def _u16(b: bytes | memoryview, pos: int) -> int:
    return int(struct.unpack_from("<H", b, pos)[0])


def _u32(b: bytes | memoryview, pos: int) -> int:
    return int(struct.unpack_from("<I", b, pos)[0])


def _file_id(b: bytes | memoryview, pos: int) -> FileId:
    persistent, volatile = struct.unpack_from("<QQ", b, pos)
    return FileId(persistent, volatile)


def negotiate_response(b: Behaviour, salt: bytes) -> bytes:
    """2.2.4 with the contexts 3.1.1 needs: SHA-512 preauth, no cipher, AES-CMAC."""
    ctx = pack_contexts([PreauthIntegrityContext((HashAlgorithm.SHA_512,), salt),
                         EncryptionContext((0,)),
                         SigningContext((SigningAlgorithm.AES_CMAC,))])
    return struct.pack("<HHHH16sIIIIQQHHI", 65, 0x1, Dialect.SMB_3_1_1, 3, os.urandom(16),
                       0x4 | 0x2, b.max_transact_size, b.max_read_size, b.max_write_size,
                       TIME, 0, 0, 0, HEADER_SIZE + 64) + ctx


def session_setup_body(token: bytes, flags: int = 0) -> bytes:
    """2.2.6: SessionFlags and one security token."""
    return struct.pack("<HHHH", 9, flags, HEADER_SIZE + 8 if token else 0,
                       len(token)) + (token or b"\0")


def tree_connect_body(share_type: int = 1) -> bytes:
    """2.2.10: a disk share (by default) with full access, no flags."""
    return struct.pack("<HBBIII", 16, share_type, 0, 0, 0, 0x1F01FF)


def entry_bytes(node: Node, name: bytes | None = None) -> bytes:
    """One FileIdBothDirectoryInformation entry (MS-FSCC 2.4.17) with its NextEntryOffset
    zero, the name given as raw UTF-16LE bytes."""
    t = node.times % U64
    entry = DirectoryEntry("", 0, 0, 0, 0, 0, 0, 0, _attributes(node), len(node.eas or b""),
                           node.file_id)
    fixed = bytearray(pack_directory_entries([entry], FileInfoClass.ID_BOTH_DIRECTORY))
    struct.pack_into("<QQQQQQ", fixed, 8, t, t, t, t, _size(node), _size(node))
    raw = node.wire_name if name is None else name
    struct.pack_into("<I", fixed, _NAME_LENGTH_AT, len(raw))
    return bytes(fixed[:_ID_BOTH_FIXED]) + raw


def chain_entries(entries: list[bytes]) -> bytes:
    """Entries back to back, each 8-byte aligned, NextEntryOffset set."""
    out = bytearray()
    for i, e in enumerate(entries):
        start = len(out)
        out += e
        if i != len(entries) - 1:
            out += bytes(pad8(len(e)))
            struct.pack_into("<I", out, start, len(out) - start)
    return bytes(out)


def _size(node: Node) -> int:
    return (len(node.data) if node.size is None else node.size) % U64


def _attributes(node: Node) -> FileAttributes:
    if node.reparse is not None:
        return FileAttributes.ARCHIVE | FileAttributes.REPARSE_POINT
    return FileAttributes.DIRECTORY if node.is_dir else FileAttributes.ARCHIVE


def symlink_error(target: str, *, length: int | None = None) -> bytes:
    """A Symbolic Link Error Response (2.2.2.2.1) naming ``target`` (relative), its
    SymLinkLength given or right."""
    paths = target.encode("utf-16-le")
    size = 24 + 2 * len(paths) if length is None else length
    return struct.pack("<IIIHHHHHHI", size, SYMLINK_ERROR_TAG, 0xA000000C,
                       12 + 2 * len(paths), 0, 0, len(paths), len(paths), len(paths),
                       SYMLINK_FLAG_RELATIVE) + paths * 2


def _signed(v: int) -> int:
    v %= U64
    return v - U64 if v >= 2**63 else v


def all_information(node: Node, path: str) -> bytes:
    t = _signed(node.times)
    return FileAllInformation(
        FileBasicInformation(t, t, t, t, _attributes(node)),
        FileStandardInformation(_size(node), _size(node), 1, False, node.is_dir),
        node.file_id, len(node.eas or b""), AccessMask(0x1F01FF), 0, 0, 0,
        "\\" + path).pack()


class _Connection:
    def __init__(self, server: HostileServer, stream: FramedStream) -> None:
        self.server = server
        self.stream = stream
        self.preauth = crypto.PreauthIntegrity()
        self.sessions: dict[int, _Session] = {}
        self.opens: dict[int, _Open] = {}
        self.volatile = itertools.count(1)
        self.nursery: trio.Nursery | None = None
        self.flooded = False
        #: Close the connection instead of answering this message.
        self.drop = False
        #: What to start once the current response is sent.
        self._after: list[Callable[[], None]] = []

    async def run(self) -> None:
        async with trio.open_nursery() as self.nursery:
            try:
                while True:
                    frame = await self.stream.receive_message()
                    await self._on_frame(bytes(frame))
            except _GONE:
                pass
            self.nursery.cancel_scope.cancel()

    async def _on_frame(self, frame: bytes) -> None:
        members = [bytes(m) for m in split_compound(frame)]
        out: list[bytearray] = []
        last_fid: FileId | None = None
        last_status = Status.SUCCESS
        self._maybe_expire(Header.unpack(members[0]))
        for i, msg in enumerate(members):
            h = Header.unpack(msg)
            self.server.seen[_name(h.command)] += 1
            related = bool(h.flags & HeaderFlags.RELATED_OPERATIONS) and i > 0
            if h.command == Command.CANCEL:
                continue
            if self._deleted(h):
                status, body, extra = Status.USER_SESSION_DELETED, _ERROR_BODY, {}
            elif self._expired(h):
                self.server.expired_answers += 1
                status, body, extra = Status.NETWORK_SESSION_EXPIRED, _ERROR_BODY, {}
            elif related and last_status != Status.SUCCESS and last_fid is None:
                status, body, extra = last_status, _ERROR_BODY, {}
            else:
                status, body, extra = await self._handle(h, msg, last_fid if related else None)
            if h.command == Command.CREATE:
                last_fid = extra.pop("file_id", None)  # type: ignore[assignment]
                last_status = status
            if body is None:
                continue
            out.append(self._response(h, status, body, **extra))
        if self.drop:
            await self.stream.aclose()
            return
        if not out:
            return
        for i, member in enumerate(out):
            if i != len(out) - 1:
                member += bytes(pad8(len(member)))
                struct.pack_into("<I", member, 20, len(member))
            self._sign(member)
        await self.stream.send_message(b"".join(out))
        while self._after:
            self._after.pop(0)()

    def _session_of(self, h: Header) -> _Session | None:
        """The established session a request names (3.3.5.2.9); None for NEGOTIATE,
        SESSION_SETUP, ECHO and CANCEL, which Samba takes without one."""
        if h.command in (Command.NEGOTIATE, Command.SESSION_SETUP, Command.ECHO,
                         Command.CANCEL):
            return None
        session = self.sessions.get(h.session_id)
        return session if session is not None and session.signing_key else None

    def _deleted(self, h: Header) -> bool:
        """A request for a session this connection does not have (3.3.5.2.9; a
        SESSION_SETUP naming one, 3.3.5.5)."""
        if h.command in (Command.NEGOTIATE, Command.ECHO, Command.CANCEL):
            return False
        return h.session_id != 0 and h.session_id not in self.sessions

    def _maybe_expire(self, h: Header) -> None:
        every = self.server.behaviour.expire_every
        session = self._session_of(h)
        if every and session is not None and session.requests >= every:
            session.expired = True

    def _expired(self, h: Header) -> bool:
        session = self._session_of(h)
        if session is None:
            return False
        session.requests += 1
        return session.expired

    def _response(self, h: Header, status: int, body: bytes, **changes: object) -> bytearray:
        grant = min(max(h.credits, 1), 512)
        header = Header(command=h.command, message_id=h.message_id,
                        credit_charge=h.credit_charge, status=status, credits=grant,
                        flags=HeaderFlags.SERVER_TO_REDIR | (h.flags
                                                             & HeaderFlags.RELATED_OPERATIONS),
                        tree_id=h.tree_id, session_id=h.session_id)
        if changes:
            header = replace(header, **changes)  # type: ignore[arg-type]
        return bytearray(header.pack() + body)

    def _sign(self, member: bytearray) -> None:
        sid = struct.unpack_from("<Q", member, 40)[0]
        session = self.sessions.get(sid)
        if session is not None and session.signing_key:
            crypto.sign_message(SigningAlgorithm.AES_CMAC, session.signing_key, member)

    async def _handle(self, h: Header, msg: bytes, related: FileId | None
                      ) -> tuple[int, bytes | None, dict[str, object]]:
        handler = {
            Command.NEGOTIATE: self._negotiate,
            Command.SESSION_SETUP: self._session_setup,
            Command.TREE_CONNECT: self._tree_connect,
            Command.CREATE: self._create,
            Command.CLOSE: self._close,
            Command.QUERY_INFO: self._query_info,
            Command.QUERY_DIRECTORY: self._query_directory,
            Command.READ: self._read,
            Command.ECHO: self._ok(EchoResponse().pack()),
            Command.LOGOFF: self._ok(struct.pack("<HH", 4, 0)),
            Command.TREE_DISCONNECT: self._ok(struct.pack("<HH", 4, 0)),
            Command.OPLOCK_BREAK: self._break_ack,
        }.get(h.command)  # type: ignore[call-overload]
        if self.server.behaviour.writable:
            handler = {Command.WRITE: self._write, Command.SET_INFO: self._set_info,
                       Command.FLUSH: self._ok(struct.pack("<HH", 4, 0))
                       }.get(h.command, handler)  # type: ignore[call-overload]
        if handler is None:
            # Writes, SET_INFO, IOCTL, LOCK...: a read-only share, or not ours to do.
            status = Status.MEDIA_WRITE_PROTECTED if h.command in (
                Command.WRITE, Command.SET_INFO, Command.FLUSH) else Status.NOT_SUPPORTED
            return status, _ERROR_BODY, {}
        return await handler(h, msg, related)  # type: ignore[no-any-return]

    @staticmethod
    def _ok(body: bytes) -> Callable[..., object]:
        async def answer(h: Header, msg: bytes, related: FileId | None
                         ) -> tuple[int, bytes, dict[str, object]]:
            return Status.SUCCESS, body, {}
        return answer

    # ------------------------------------------------------------------ handshake
    async def _negotiate(self, h: Header, msg: bytes, related: FileId | None
                         ) -> tuple[int, bytes, dict[str, object]]:
        body = negotiate_response(self.server.behaviour, os.urandom(32))
        reply = self._response(h, Status.SUCCESS, body)
        self.preauth.update(msg)
        self.preauth.update(bytes(reply))
        return Status.SUCCESS, body, {}

    async def _session_setup(self, h: Header, msg: bytes, related: FileId | None
                             ) -> tuple[int, bytes, dict[str, object]]:
        import spnego

        offset, length = _u16(msg, HEADER_SIZE + 12), _u16(msg, HEADER_SIZE + 14)
        token = msg[offset:offset + length]
        sid = h.session_id
        known = self.sessions.get(sid)
        if known is not None and known.signing_key:
            return self._reauthenticate(h, msg, token, known)
        if sid not in self.sessions:
            sid = 0x1000 + next(self.volatile)
            self.sessions[sid] = _Session(self.preauth.copy(), spnego.server(protocol="ntlm"))
        session = self.sessions[sid]
        session.preauth.update(msg)
        try:
            answer = session.auth.step(token)  # type: ignore[attr-defined]
        except Exception:
            del self.sessions[sid]
            return Status.LOGON_FAILURE, _ERROR_BODY, {"session_id": sid}
        body = session_setup_body(answer or b"")
        if not session.auth.complete:  # type: ignore[attr-defined]
            reply = self._response(h, Status.MORE_PROCESSING_REQUIRED, body, session_id=sid)
            session.preauth.update(bytes(reply))
            return Status.MORE_PROCESSING_REQUIRED, body, {"session_id": sid}
        keys = crypto.derive_keys_311(session.auth.session_key,  # type: ignore[attr-defined]
                                      session.preauth.value, None)
        session.signing_key = keys.signing_key
        self.server._sessions.append(session)
        return Status.SUCCESS, body, {"session_id": sid}

    def _reauthenticate(self, h: Header, msg: bytes, token: bytes, session: _Session
                        ) -> tuple[int, bytes, dict[str, object]]:
        """A SESSION_SETUP for a live session: a re-authentication (3.3.5.5.3). It must
        be signed with the session's key; the keys and the preauth hash stay as they
        are; until it succeeds the session stays expired."""
        import spnego

        if self.server.behaviour.drop_at_renewal and not self.server.renewals:
            self.server.renewals.append(Renewal(h.session_id, 1, True, "dropped"))
            self.drop = True
            return Status.SUCCESS, _ERROR_BODY, {}
        if session.renewal is None:
            session.renewal = Renewal(h.session_id)
            session.reauth = spnego.server(protocol="ntlm")
            self.server.renewals.append(session.renewal)
        renewal = session.renewal
        renewal.legs += 1
        signed = bool(h.flags & HeaderFlags.SIGNED)
        if signed:
            try:
                crypto.verify(SigningAlgorithm.AES_CMAC, session.signing_key, msg)
            except Exception:
                signed = False
        renewal.signed = renewal.signed and signed
        status = Status.ACCESS_DENIED  # an unsigned one: refused (3.3.5.2.4)
        answer: bytes | None = None
        if signed:
            try:
                answer = session.reauth.step(token)  # type: ignore[attr-defined]
            except Exception:
                answer, status = None, Status.LOGON_FAILURE
            else:
                status = Status.LOGON_FAILURE if self.server.behaviour.refuse_renewal \
                    else Status.SUCCESS
            if answer is not None and not session.reauth.complete:  # type: ignore[attr-defined]
                return Status.MORE_PROCESSING_REQUIRED, session_setup_body(answer), {}
        if status == Status.SUCCESS:
            renewal.outcome = "ok"
            session.renewal = session.reauth = None
            session.expired, session.requests = False, 0
            return Status.SUCCESS, session_setup_body(answer or b""), {}
        # Samba ends a session whose re-authentication failed, once its signed answer
        # is on its way (smbd_smb2_session_setup_wrap_setup_done).
        renewal.outcome = _name_status(status)
        self._after.append(lambda: self.sessions.pop(h.session_id, None))
        return status, _ERROR_BODY, {}

    async def _tree_connect(self, h: Header, msg: bytes, related: FileId | None
                            ) -> tuple[int, bytes, dict[str, object]]:
        offset, length = _u16(msg, HEADER_SIZE + 4), _u16(msg, HEADER_SIZE + 6)
        path = msg[offset:offset + length].decode("utf-16-le")
        if path.rsplit("\\", 1)[-1].lower() != SHARE:
            return Status.BAD_NETWORK_NAME, _ERROR_BODY, {}
        return Status.SUCCESS, tree_connect_body(), {"tree_id": 7}

    # ------------------------------------------------------------------ files
    async def _create(self, h: Header, msg: bytes, related: FileId | None
                      ) -> tuple[int, bytes, dict[str, object]]:
        disposition = CreateDisposition(_u32(msg, HEADER_SIZE + 36))
        options = CreateOptions(_u32(msg, HEADER_SIZE + 40))
        offset, length = _u16(msg, HEADER_SIZE + 44), _u16(msg, HEADER_SIZE + 46)
        path = msg[offset:offset + length].decode("utf-16-le", "replace")
        node = self.server.lookup(path)
        action = CreateAction.OPENED
        writable = self.server.behaviour.writable
        if node is None:
            if disposition in (CreateDisposition.OPEN, CreateDisposition.OVERWRITE):
                return Status.OBJECT_NAME_NOT_FOUND, _ERROR_BODY, {}
            if not writable or options & CreateOptions.DIRECTORY_FILE:
                return Status.MEDIA_WRITE_PROTECTED, _ERROR_BODY, {}
            parent_path, _, name = path.rpartition("\\")
            parent = self.server.lookup(parent_path)
            if parent is None or not parent.is_dir:
                return Status.OBJECT_PATH_NOT_FOUND, _ERROR_BODY, {}
            node = file(name)
            self.server._assign_ids(node)
            assert parent.children is not None
            parent.children.append(node)
            action = CreateAction.CREATED
        elif disposition not in (CreateDisposition.OPEN, CreateDisposition.OPEN_IF):
            if not writable or node.is_dir:
                return Status.MEDIA_WRITE_PROTECTED, _ERROR_BODY, {}
            if disposition == CreateDisposition.CREATE:
                return Status.OBJECT_NAME_COLLISION, _ERROR_BODY, {}
            node.data, node.size, action = b"", None, CreateAction.OVERWRITTEN
        if node.reparse is not None and not options & CreateOptions.OPEN_REPARSE_POINT:
            body = ErrorResponse(1, b"", (ErrorContext(ErrorId.DEFAULT, node.reparse),))
            return Status.STOPPED_ON_SYMLINK, body.pack(), {}
        if options & CreateOptions.DIRECTORY_FILE and not node.is_dir:
            return Status.NOT_A_DIRECTORY, _ERROR_BODY, {}
        if options & CreateOptions.NON_DIRECTORY_FILE and node.is_dir:
            return Status.FILE_IS_A_DIRECTORY, _ERROR_BODY, {}
        fid = FileId(node.file_id, next(self.volatile))
        self.opens[fid.volatile] = _Open(node, path)
        t = node.times % U64
        body = CreateResponse(OplockLevel.NONE, CreateResponseFlags.NONE, action,
                              t, t, t, t, _size(node), _size(node), _attributes(node),
                              fid).pack()
        if not node.is_dir and self.server.behaviour.lease_breaks and not self.flooded:
            self.flooded = True
            self._after.append(lambda: self._flood(h.session_id))
        return Status.SUCCESS, body, {"file_id": fid}

    def _flood(self, session_id: int) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(self._send_breaks, session_id)

    async def _send_breaks(self, session_id: int) -> None:
        """Lease breaks for keys this server never granted (2.2.23.2), as fast as the
        connection takes them."""
        try:
            for n in range(self.server.behaviour.lease_breaks):
                await self._send_break(session_id, n)
        except _GONE:
            pass

    async def _send_break(self, session_id: int, n: int) -> None:
        body = LeaseBreakNotification(
            n % 0xFFFF, LeaseBreakFlags.ACK_REQUIRED, os.urandom(16),
            LeaseState(7), LeaseState(0)).pack()
        member = bytearray(Header(command=Command.OPLOCK_BREAK,
                                  message_id=0xFFFFFFFFFFFFFFFF,
                                  flags=HeaderFlags.SERVER_TO_REDIR,
                                  session_id=session_id).pack() + body)
        self._sign(member)
        await self.stream.send_message(member)
        self.server.breaks_sent += 1

    def _open_of(self, msg: bytes, at: int, related: FileId | None) -> _Open | None:
        fid = _file_id(msg, HEADER_SIZE + at)
        if fid.is_related and related is not None:
            fid = related
        return self.opens.get(fid.volatile)

    async def _close(self, h: Header, msg: bytes, related: FileId | None
                     ) -> tuple[int, bytes, dict[str, object]]:
        fid = _file_id(msg, HEADER_SIZE + 8)
        if fid.is_related and related is not None:
            fid = related
        if self.opens.pop(fid.volatile, None) is None:
            return Status.FILE_CLOSED, _ERROR_BODY, {}
        return Status.SUCCESS, CloseResponse(CloseFlags.NONE, 0, 0, 0, 0, 0, 0,
                                             FileAttributes.NONE).pack(), {}

    async def _query_info(self, h: Header, msg: bytes, related: FileId | None
                          ) -> tuple[int, bytes, dict[str, object]]:
        info_type, info_class = msg[HEADER_SIZE + 2], msg[HEADER_SIZE + 3]
        out_len = _u32(msg, HEADER_SIZE + 4)
        handle = self._open_of(msg, 24, related)
        if handle is None:
            return Status.FILE_CLOSED, _ERROR_BODY, {}
        node = handle.node
        if info_type == InfoType.FILE and info_class == FileInfoClass.ALL:
            data = all_information(node, handle.path)
        elif info_type == InfoType.FILE and info_class == FileInfoClass.FULL_EA:
            if not node.eas:
                return Status.NO_EAS_ON_FILE, _ERROR_BODY, {}
            data = node.eas
        elif info_type == InfoType.FILESYSTEM and info_class == FsInfoClass.FULL_SIZE:
            data = FileFsFullSizeInformation(1 << 20, 1 << 19, 1 << 19, 8, 512).pack()
        elif info_type == InfoType.FILESYSTEM and info_class == FsInfoClass.ATTRIBUTE:
            data = FileFsAttributeInformation(FileSystemAttributes(0x3), 255, "NTFS").pack()
        else:
            return Status.NOT_SUPPORTED, _ERROR_BODY, {}
        status = Status.SUCCESS
        if len(data) > out_len:
            data, status = data[:out_len], Status.BUFFER_OVERFLOW
        return status, QueryInfoResponse(memoryview(data)).pack(), {}

    async def _query_directory(self, h: Header, msg: bytes, related: FileId | None
                               ) -> tuple[int, bytes, dict[str, object]]:
        flags = QueryDirectoryFlags(msg[HEADER_SIZE + 3])
        handle = self._open_of(msg, 8, related)
        if handle is None or not handle.node.is_dir:
            return Status.INVALID_PARAMETER, _ERROR_BODY, {}
        if flags & QueryDirectoryFlags.RESTART_SCANS:
            handle.listed = False
        handle.pages += 1
        if handle.node.endless:
            # A page as full as the client allows of names never seen before.
            base = 10**9 + handle.pages * 1000
            entries = [entry_bytes(replace(handle.node, children=None, file_id=base + i),
                                   f"endless-{base + i:012d}".encode("utf-16-le"))
                       for i in range(min(_u32(msg, HEADER_SIZE + 28) // 160, 1000))]
            return Status.SUCCESS, QueryDirectoryResponse(
                memoryview(chain_entries(entries))).pack(), {}
        if handle.listed:
            return Status.NO_MORE_FILES, _ERROR_BODY, {}
        handle.listed = True
        entries = [entry_bytes(handle.node, b".\0"), entry_bytes(handle.node, b".\0.\0")]
        entries += [entry_bytes(child) for child in handle.node.children or ()]
        return Status.SUCCESS, QueryDirectoryResponse(
            memoryview(chain_entries(entries))).pack(), {}

    async def _read(self, h: Header, msg: bytes, related: FileId | None
                    ) -> tuple[int, bytes, dict[str, object]]:
        length = _u32(msg, HEADER_SIZE + 4)
        offset = struct.unpack_from("<Q", msg, HEADER_SIZE + 8)[0]
        handle = self._open_of(msg, 16, related)
        if handle is None:
            return Status.FILE_CLOSED, _ERROR_BODY, {}
        if handle.node.pending:
            return Status.PENDING, _ERROR_BODY, {"async_id": next(self.volatile)}
        data = handle.node.data[offset:offset + length]
        if not data:
            return Status.END_OF_FILE, _ERROR_BODY, {}
        return Status.SUCCESS, ReadResponse(memoryview(data)).pack(), {}

    async def _write(self, h: Header, msg: bytes, related: FileId | None
                     ) -> tuple[int, bytes, dict[str, object]]:
        """2.2.21: the bytes at DataOffset go to Offset of the file."""
        data_offset, length = _u16(msg, HEADER_SIZE + 2), _u32(msg, HEADER_SIZE + 4)
        offset = struct.unpack_from("<Q", msg, HEADER_SIZE + 8)[0]
        handle = self._open_of(msg, 16, related)
        if handle is None:
            return Status.FILE_CLOSED, _ERROR_BODY, {}
        data = msg[data_offset:data_offset + length]
        node = handle.node
        old = node.data
        node.data = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
        node.size = None
        return Status.SUCCESS, WriteResponse(len(data)).pack(), {}

    async def _set_info(self, h: Header, msg: bytes, related: FileId | None
                        ) -> tuple[int, bytes, dict[str, object]]:
        """2.2.39: the end of file moves; times and the rest are taken and forgotten."""
        info_type, info_class = msg[HEADER_SIZE + 2], msg[HEADER_SIZE + 3]
        offset = _u16(msg, HEADER_SIZE + 8)
        handle = self._open_of(msg, 16, related)
        if handle is None:
            return Status.FILE_CLOSED, _ERROR_BODY, {}
        if info_type != InfoType.FILE:
            return Status.NOT_SUPPORTED, _ERROR_BODY, {}
        if info_class == FileInfoClass.END_OF_FILE:
            size = struct.unpack_from("<Q", msg, offset)[0]
            node = handle.node
            node.data, node.size = node.data[:size].ljust(size, b"\0"), None
        elif info_class not in (FileInfoClass.BASIC, FileInfoClass.ALLOCATION,
                                FileInfoClass.DISPOSITION):
            return Status.NOT_SUPPORTED, _ERROR_BODY, {}
        return Status.SUCCESS, struct.pack("<H", 2), {}

    async def _break_ack(self, h: Header, msg: bytes, related: FileId | None
                         ) -> tuple[int, bytes, dict[str, object]]:
        # Every key this server names is one it never granted (3.3.5.22.2).
        self.server.break_acks += 1
        return Status.UNSUCCESSFUL, _ERROR_BODY, {}


def _name_status(status: int) -> str:
    return Status(status).name


def _name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"0x{command:x}"


__all__ = ["PASSWORD", "SHARE", "TIME", "USER", "Behaviour", "HostileServer", "Node", "Renewal",
           "directory", "eas", "entry_bytes", "file", "negotiate_response",
           "session_setup_body", "symlink_error", "tree_connect_body"]
