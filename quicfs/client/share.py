"""The small public API: a connected share with path operations.

    async with quicfs.connect("//host/share", "username=u,password=p") as share:
        await share.write_file("dir/a.txt", b"hello")
        print(await share.listdir("dir"))

Paths are '/'-separated and relative to the share root. Each path operation is one
compounded round trip where MS-SMB2 allows it (CREATE + operation + CLOSE, 3.2.4.1.4).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import trio

from quicfs.client.connection import Connection, Reply
from quicfs.client.directory import (
    DirEntry,
    iter_directory,
    page_bytes,
    page_requests,
    whole_listing,
)
from quicfs.client.dirleases import DirectoryLeases, Held
from quicfs.client.leases import Leases, new_lease_key
from quicfs.client.link import Link
from quicfs.client.nursery import open_nursery
from quicfs.client.open import FileStat, Open, read_answer
from quicfs.client.session import Session
from quicfs.client.tree import NotADiskShare, Tree
from quicfs.errors import MalformedError, QuicfsError, SMBError, UsageError
from quicfs.options import Options, parse_options
from quicfs.smb2 import lxmeta
from quicfs.smb2.constants import (
    AccessMask,
    CloseFlags,
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FileInfoClass,
    FsInfoClass,
    ImpersonationLevel,
    InfoType,
    LeaseState,
    OplockLevel,
    ShareAccess,
)
from quicfs.smb2.control import ErrorResponse, SymlinkError
from quicfs.smb2.create import (
    CreateRequest,
    CreateRequestContext,
    CreateResponse,
    DurableHandleRequestV2,
    EaBufferRequest,
    LeaseRequestV2,
    QueryOnDiskId,
)
from quicfs.smb2.ea import pack_eas, unpack_eas
from quicfs.smb2.fileid import FileId
from quicfs.smb2.filetime import settable_filetime
from quicfs.smb2.info import (
    FileAllInformation,
    FileBasicInformation,
    FileDispositionInformation,
    FileEndOfFileInformation,
    FileFsFullSizeInformation,
    FileLinkInformation,
    FileRenameInformation,
    QueryInfoRequest,
    QueryInfoResponse,
    SetInfoRequest,
)
from quicfs.smb2.io import CloseRequest, ReadRequest, ReadResponse, WriteRequest
from quicfs.smb2.status import Status, is_error
from quicfs.url import ShareURL, parse_url

log = logging.getLogger("quicfs")

_MODES = {
    # mode: (desired access, disposition)
    "r": (AccessMask.GENERIC_READ, CreateDisposition.OPEN),
    "r+": (AccessMask.GENERIC_READ | AccessMask.GENERIC_WRITE, CreateDisposition.OPEN),
    "w": (AccessMask.GENERIC_READ | AccessMask.GENERIC_WRITE, CreateDisposition.OVERWRITE_IF),
    "x": (AccessMask.GENERIC_READ | AccessMask.GENERIC_WRITE, CreateDisposition.CREATE),
    "a": (AccessMask.GENERIC_READ | AccessMask.GENERIC_WRITE, CreateDisposition.OPEN_IF),
}


#: How long the server keeps a durable open for us after the connection is lost.
DURABLE_TIMEOUT_MS = 120_000


def create_mode(*, exclusive: bool, truncate: bool) -> str:
    """The ``Share.open`` mode of an O_CREAT open with O_EXCL / O_TRUNC."""
    return "x" if exclusive else "w" if truncate else "a"


def _eas_of(reply: Reply) -> list[tuple[bytes, bytes]]:
    """The list in a reply to ``Share._query_eas`` (none: STATUS_NO_EAS_ON_FILE)."""
    if reply.status == Status.NO_EAS_ON_FILE:
        return []
    return unpack_eas(QueryInfoResponse.unpack(reply.message).buffer)


def _created(reply: Reply) -> CreateResponse:
    """The CREATE response that opens a compound, whose statuses nobody has checked
    (Tree.chain): its error status raised as Tree.request would."""
    if is_error(reply.status):
        raise SMBError(reply.status)
    return CreateResponse.unpack(reply.message)


def _with_eas(req: CreateRequest, eas: Sequence[tuple[bytes, bytes]]) -> CreateRequest:
    """``req`` carrying ``eas`` for the file it creates (SMB2_CREATE_EA_BUFFER). A
    server sets them only for an open that may write EAs (Samba: ACCESS_DENIED
    otherwise, with the file made), so the open asks for that right too."""
    if not eas:
        return req
    return replace(req, contexts=(*req.contexts, EaBufferRequest(tuple(eas))),
                   desired_access=req.desired_access | AccessMask.FILE_WRITE_EA)


def smb_path(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"path {path!r} leaves the share")
    return "\\".join(parts)


@dataclass(frozen=True, slots=True)
class Whole:
    """A directory listed whole (Share.list_whole)."""

    #: The directory's own attributes (None: listed through a handle open already).
    here: FileStat | None
    entries: list[DirEntry]
    #: The directory lease that keeps the listing true past actimeo, if one was granted.
    held: Held | None = None


class Share:
    def __init__(self, url: ShareURL, tree: Tree, options: Options | None = None,
                 uplink: Link | None = None) -> None:
        self.url = url
        self.tree = tree
        self.options = options or Options()
        self.uplink = uplink  # the connection, and the way back to it
        # Leases are the link's: its connections bring their breaks (link.py). A share
        # without a link hears of none.
        leases = Leases(tree) if uplink is None else uplink.leases
        assert leases is not None, "a link is started before its share is made"
        self.leases = leases
        self.dir_leases = DirectoryLeases(tree, self.leases,
                                          uplink.nursery if uplink is not None else None,
                                          top=url.path)

    @property
    def conn(self) -> Connection:
        return self.tree.conn

    @property
    def session(self) -> Session:
        return self.tree.session

    @property
    def transport(self) -> str:
        return self.conn.transport.kind

    # ------------------------------------------------------------------ opens
    def _create(
        self,
        path: str,
        *,
        access: AccessMask,
        disposition: CreateDisposition,
        options: CreateOptions = CreateOptions.NONE,
        attributes: FileAttributes = FileAttributes.NONE,
        share: ShareAccess = ShareAccess.ALL,
    ) -> CreateRequest:
        req = CreateRequest(
            name=smb_path(path),
            desired_access=access,
            file_attributes=attributes,
            share_access=share,
            disposition=disposition,
            options=options,
            oplock_level=OplockLevel.NONE,
            impersonation=ImpersonationLevel.IMPERSONATION,
        )
        parent = self.dir_leases.parent_key(path)
        if parent is None:
            return req
        # A lease of no caching, only to name the directory's lease key: so that this
        # change breaks no lease of ours on it (dirleases.py).
        return self._leased(req, path, new_lease_key(), LeaseState.NONE, parent=parent)

    def _leased(self, req: CreateRequest, path: str, key: bytes, state: LeaseState,
                *more: CreateRequestContext, parent: bytes | None = None) -> CreateRequest:
        """``req`` asking for a lease (3.2.4.3.8): ``state`` under ``key``, with the
        key of ``path``'s directory (``parent``, if known already) as ParentLeaseKey
        where directories are leased."""
        if parent is None:
            parent = self.dir_leases.parent_key(path) or bytes(16)
        return replace(req, oplock_level=OplockLevel.LEASE, contexts=(
            LeaseRequestV2(lease_key=key, state=state, parent_lease_key=parent), *more))

    def _opened(self, path: str, created: CreateResponse, req: CreateRequest | None = None,
                *, head: bytes | None = None, disposable: bool = False) -> Open:
        """The open a CREATE made, on its tree's list of opens: so a reconnect reopens it
        (3.2.4.4), and a break of its lease finds it (leases.py)."""
        handle = Open(self.tree, created.file_id, path, created, req, head=head,
                      disposable=disposable)
        self.tree.opens.add(handle)
        return handle

    async def open(self, path: str, mode: str = "r", *, lease_key: bytes | None = None,
                   eas: Sequence[tuple[bytes, bytes]] = (), head: int = 0) -> Open:
        """Open a file: ``r``, ``r+``, ``w`` (create/truncate), ``x`` (must not exist),
        ``a`` (create if missing). A directory where a file is expected is EISDIR.
        ``eas`` go with the CREATE (2.2.13.2.1): a file it creates has them at once.

        With ``lease_key`` the open asks for a lease under that key (3.2.4.3.8): Read and
        Handle caching, and Write caching too when it may write; ``Open.lease_state``
        says what the server granted.

        With ``head`` the first ``head`` bytes are read in the same round trip (CREATE +
        READ as a related compound, 3.2.4.1.4): ``Open.take_head()`` gives them, or None if
        that READ failed (a later read asks again and reports it)."""
        if mode not in _MODES:
            raise ValueError(f"bad mode {mode!r}")
        access, disposition = _MODES[mode]
        req = self._create(path, access=access, disposition=disposition,
                           options=CreateOptions.NON_DIRECTORY_FILE)
        if lease_key is not None:
            wanted = LeaseState.READ_CACHING | LeaseState.HANDLE_CACHING
            if mode != "r":
                wanted |= LeaseState.WRITE_CACHING
            # Durable too (3.2.4.3.5): the open then survives a lost connection and is
            # reclaimed by its CreateGuid (issue: resilience).
            req = self._leased(
                req, path, lease_key, wanted,
                DurableHandleRequestV2(timeout=DURABLE_TIMEOUT_MS),
                # The file's identity, to recognise it if it must be reopened by name.
                QueryOnDiskId())
        req = _with_eas(req, eas)
        if not head:
            created = CreateResponse.unpack((await self.tree.request(req)).message)
            return self._opened(path, created, req)
        opened, read = await self.tree.chain(
            [req, ReadRequest(file_id=FileId.related(), offset=0, length=head)])
        created = _created(opened)
        data: bytes | None = None
        if read.status == Status.END_OF_FILE or not is_error(read.status):
            try:
                data = bytes(read_answer(read, head))
            except MalformedError:
                pass  # the open stands; a later READ asks again and says so
        return self._opened(path, created, req, head=data)

    async def open_listing(self, path: str) -> tuple[Open, list[Reply]]:
        """Open a directory and ask for its first pages in the same round trip (CREATE +
        QUERY_DIRECTORY x FIRST_PAGES, related: 3.2.4.1.4); the replies are for a
        DirectoryReader's ``answered``. A directory of up to a page is then listed, its
        end included, in that one round trip."""
        replies = await self.tree.chain([self._listing_create(path),
                                         *page_requests(page_bytes(self.tree))])
        created = _created(replies[0])
        return self._opened(path, created), replies[1:]

    def _listing_create(self, path: str) -> CreateRequest:
        return self._create(
            path,
            access=AccessMask.FILE_READ_DATA | AccessMask.FILE_READ_ATTRIBUTES
            | AccessMask.SYNCHRONIZE,
            disposition=CreateDisposition.OPEN,
            options=CreateOptions.DIRECTORY_FILE,
        )

    async def list_whole(self, path: str, page: int, *, lease: bool = False) -> Whole | None:
        """A directory's attributes and every entry, in one round trip: CREATE +
        QUERY_DIRECTORY x 2 of ``page`` bytes + CLOSE, related (3.2.4.1.4). None when
        the entries go on past the first page (the second's STATUS_NO_MORE_FILES is
        what says it held them all).

        With ``lease``, where the server grants directory leases, the CREATE asks for
        one and the handle stays open to keep it (dirleases.py): no CLOSE."""
        pages = page_requests(min(page, page_bytes(self.tree)))
        if not (lease and self.dir_leases.may_lease(path)):
            replies = await self._on_path(self._listing_create(path), *pages,
                                          allow=(Status.NO_MORE_FILES,))
            entries = whole_listing(path, replies[1:-1], self.tree.max_dir_entries)
            return None if entries is None else Whole(self._here(replies[0]), entries)
        pending, context = self.dir_leases.request(path)
        handle = None
        try:
            create = replace(self._listing_create(path), oplock_level=OplockLevel.LEASE,
                             contexts=(context,))
            replies = await self.tree.chain([create, *pages])
            if is_error(replies[0].status):
                raise SMBError(replies[0].status)
            created = _created(replies[0])
            handle = self._opened(path, created, disposable=True)
            entries = whole_listing(path, replies[1:], self.tree.max_dir_entries)
        except BaseException:
            self.dir_leases.adopt(pending, handle, keep=False)
            raise
        held = self.dir_leases.adopt(pending, handle, keep=entries is not None)
        parent = path.rpartition("/")[0]
        if held is not None and path != self.url.path and self.uplink is not None \
                and self.dir_leases.current(parent) is None:
            # Attributes set on this directory break its parent's lease, not its own:
            # that one too, for them to be trusted past actimeo (dirleases.covers).
            self.uplink.nursery.start_soon(self._lease_only, parent)
        return None if entries is None else Whole(self._here(replies[0]), entries, held)

    async def relist(self, held: Held, page: int) -> list[DirEntry] | None:
        """The entries of a directory we hold a lease on, listed again through the
        lease's handle: QUERY_DIRECTORY x 2 from the start, related (no CREATE, no
        CLOSE). None when they go on past the first page."""
        assert held.handle is not None
        replies = await self.tree.chain(page_requests(min(page, page_bytes(self.tree)),
                                                      file_id=held.handle.file_id))
        return whole_listing(held.path, replies, self.tree.max_dir_entries)

    async def _lease_only(self, path: str) -> None:
        """Take a lease on directory ``path`` without listing it."""
        if not self.dir_leases.may_lease(path) or self.dir_leases.asked(path):
            return
        pending, context = self.dir_leases.request(path)
        handle = None
        try:
            create = replace(self._create(path, access=AccessMask.FILE_READ_ATTRIBUTES
                                          | AccessMask.SYNCHRONIZE,
                                          disposition=CreateDisposition.OPEN,
                                          options=CreateOptions.DIRECTORY_FILE),
                             oplock_level=OplockLevel.LEASE, contexts=(context,))
            created = _created(await self.tree.request(create))
            handle = self._opened(path, created, disposable=True)
        except QuicfsError as exc:
            log.debug("a lease on %s: %s", path or "/", exc)
        finally:
            self.dir_leases.adopt(pending, handle)

    @staticmethod
    def _here(reply: Reply) -> FileStat:
        return FileStat.from_info("", _created(reply), file_id=0)

    @asynccontextmanager
    async def opened(self, path: str, mode: str = "r") -> AsyncIterator[Open]:
        """An open closed on exit; leased, hence durable: a transfer survives a lost
        connection (the lease's breaks are acknowledged by ``leases``: nothing is cached
        here)."""
        handle = await self.open(path, mode, lease_key=new_lease_key())
        try:
            yield handle
        finally:
            with trio.CancelScope(shield=True):
                await handle.close()

    # ------------------------------------------------------------------ compounds
    async def _on_path(self, create: CreateRequest, *middle: object,
                       allow: Sequence[int] = ()) -> list[Reply]:
        """CREATE + ``middle`` + CLOSE as one related compound; raises the first error
        (but BUFFER_OVERFLOW, and the statuses in ``allow``)."""
        close = CloseRequest(file_id=FileId.related(), flags=CloseFlags.NONE)
        replies = await self.tree.chain([create, *middle, close])  # type: ignore[list-item]
        for reply in replies:
            if is_error(reply.status) and reply.status != Status.BUFFER_OVERFLOW \
                    and reply.status not in allow:
                raise SMBError(reply.status)
        return replies

    async def stat(self, path: str, *, lx: bool = False,
                   lease: tuple[bytes, LeaseState] | None = None,
                   link: bool = False) -> FileStat:
        """``path``'s attributes; with ``lx`` its Linux owner and mode too (its EAs,
        asked for in the same compound: quicfs.smb2.lxmeta). With ``lease`` (key, state),
        the file's lease held by our opens, the open is made under it: it then breaks
        none of our caching (3.3.5.9.8). A symbolic link the server will not follow
        (a Windows reparse point: STATUS_STOPPED_ON_SYMLINK) is the link's own, as
        lstat(2) gives them (``link``: opened as a reparse point, 2.2.13)."""
        access = AccessMask.FILE_READ_ATTRIBUTES
        if lx:
            access |= AccessMask.FILE_READ_EA
        create = self._create(path, access=access, disposition=CreateDisposition.OPEN,
                              options=CreateOptions.OPEN_REPARSE_POINT if link
                              else CreateOptions.NONE)
        if lease is not None:
            create = self._leased(create, path, *lease)
        try:
            if not lx:
                return self._stat_of(path, (await self._on_path(create, self._query_all()))[1])
            replies = await self._on_path(create, self._query_all(), self._query_eas(),
                                          allow=(Status.NO_EAS_ON_FILE,))
        except SMBError as exc:
            if exc.status == Status.STOPPED_ON_SYMLINK and not link:
                return await self.stat(path, lx=lx, lease=lease, link=True)
            if lease is None or exc.status != Status.INVALID_PARAMETER:
                raise
            # The key is tied to another file than the name's now (3.3.5.9.8).
            return await self.stat(path, lx=lx, link=link)
        return replace(self._stat_of(path, replies[1]), lx=lxmeta.decode(_eas_of(replies[2])))

    @staticmethod
    def _query_all() -> QueryInfoRequest:
        return QueryInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.ALL,
                                file_id=FileId.related(), output_buffer_length=4096)

    @staticmethod
    def _query_eas() -> QueryInfoRequest:
        # SL_RESTART_SCAN (MS-SMB2 2.2.37): the whole list, not where a last query ended.
        return QueryInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.FULL_EA,
                                file_id=FileId.related(), output_buffer_length=65536,
                                flags=0x01)

    @staticmethod
    def _stat_of(path: str, reply: Reply) -> FileStat:
        """The FileStat in a reply to ``_query_all``."""
        info = FileAllInformation.unpack(QueryInfoResponse.unpack(reply.message).buffer)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return FileStat.from_info(name, info, file_id=info.index_number,
                                  nlink=info.number_of_links)

    async def symlink_error(self, path: str) -> SymlinkError:
        """What the server says of the symbolic link ``path`` is, one it will not follow
        (a Windows reparse point): the Symbolic Link Error Response of a CREATE stopped
        on it (MS-SMB2 2.2.2.2.1). SMBError(NOT_A_REPARSE_POINT) if it opens after all
        (closed again), MalformedError if that response is."""
        create = self._create(path, access=AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN)
        reply = await self.tree.request(create, allowed=(Status.STOPPED_ON_SYMLINK,))
        if reply.status == Status.STOPPED_ON_SYMLINK:
            return ErrorResponse.unpack(reply.message).symlink()
        created = CreateResponse.unpack(reply.message)
        await self._opened(path, created).close()
        raise SMBError(Status.NOT_A_REPARSE_POINT)

    async def read_head(self, path: str, length: int) -> bytes:
        """Up to ``length`` bytes from the start of a small file, in one round trip
        (CREATE + READ + CLOSE compounded): symlink files are read this way."""
        create = self._create(path, access=AccessMask.FILE_READ_DATA
                              | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN,
                              options=CreateOptions.NON_DIRECTORY_FILE)
        read = ReadRequest(file_id=FileId.related(), offset=0, length=length)
        replies = await self._on_path(create, read, allow=(Status.END_OF_FILE,))
        if replies[1].status == Status.END_OF_FILE:
            return b""
        return bytes(ReadResponse.unpack(replies[1].message).data)

    async def create_small(self, path: str, data: bytes, *,
                           eas: Sequence[tuple[bytes, bytes]] = ()) -> FileStat:
        """Make a new file holding ``data`` (and ``eas``) in one round trip (CREATE that
        fails if the name exists + WRITE + QUERY_INFO + CLOSE compounded); its
        attributes after."""
        create = self._create(path, access=AccessMask.GENERIC_READ | AccessMask.GENERIC_WRITE,
                              disposition=CreateDisposition.CREATE,
                              options=CreateOptions.NON_DIRECTORY_FILE)
        write = WriteRequest(file_id=FileId.related(), offset=0, data=data)
        replies = await self._on_path(_with_eas(create, eas), write, self._query_all())
        st = self._stat_of(path, replies[2])
        return replace(st, lx=lxmeta.decode(eas)) if eas else st

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except SMBError as exc:
            if exc.status in (Status.OBJECT_NAME_NOT_FOUND, Status.OBJECT_PATH_NOT_FOUND):
                return False
            raise
        return True

    async def mkdir(self, path: str, *, eas: Sequence[tuple[bytes, bytes]] = ()
                    ) -> FileStat:
        """Create a directory (with ``eas``); its attributes come back in the same round
        trip."""
        return await self._make(path, CreateOptions.DIRECTORY_FILE, FileAttributes.DIRECTORY,
                                eas)

    async def make_empty(self, path: str, eas: Sequence[tuple[bytes, bytes]]) -> FileStat:
        """Create an empty file with ``eas`` (a FIFO or device node kept as one:
        quicfs.smb2.lxmeta); its attributes in the same round trip."""
        return await self._make(path, CreateOptions.NON_DIRECTORY_FILE, FileAttributes.NONE,
                                eas)

    async def _make(self, path: str, options: CreateOptions, attributes: FileAttributes,
                    eas: Sequence[tuple[bytes, bytes]]) -> FileStat:
        create = self._create(path, access=AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.CREATE, options=options,
                              attributes=attributes)
        st = self._stat_of(path, (await self._on_path(_with_eas(create, eas),
                                                      self._query_all()))[1])
        return replace(st, lx=lxmeta.decode(eas)) if eas else st

    async def _delete(self, path: str, options: CreateOptions) -> None:
        create = self._create(path, access=AccessMask.DELETE | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN, options=options)
        dispose = SetInfoRequest(info_type=InfoType.FILE,
                                 info_class=FileInfoClass.DISPOSITION,
                                 file_id=FileId.related(),
                                 buffer=FileDispositionInformation(True).pack())
        await self._on_path(create, dispose)

    async def remove(self, path: str) -> None:
        """Delete a file; a directory is refused with EISDIR (STATUS_FILE_IS_A_DIRECTORY)."""
        await self._delete(path, CreateOptions.NON_DIRECTORY_FILE)

    async def rmdir(self, path: str) -> None:
        async with self.dir_leases.letting_go(path):
            await self._delete(path, CreateOptions.DIRECTORY_FILE)

    async def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        async with self.dir_leases.letting_go(src, *((dst,) if replace else ())):
            await self._rename(src, dst, replace)

    async def _rename(self, src: str, dst: str, replace: bool) -> None:
        create = self._create(src, access=AccessMask.DELETE | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN)
        rename = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.RENAME,
                                file_id=FileId.related(),
                                buffer=FileRenameInformation(replace, smb_path(dst)).pack())
        await self._on_path(create, rename)

    async def set_aside(self, path: str, aside: str) -> None:
        """Delete ``path`` while it is open (a file or an empty directory): renamed to
        ``aside`` and marked for deletion in one compound, so the name is free at once
        (a delete-pending name refuses new opens until its last handle closes) and the
        object goes with that last close. cifs.ko's "silly rename". A directory that is
        not empty stays renamed (STATUS_DIRECTORY_NOT_EMPTY): the caller puts it back."""
        async with self.dir_leases.letting_go(path):
            await self._set_aside(path, aside)

    async def _set_aside(self, path: str, aside: str) -> None:
        create = self._create(path, access=AccessMask.DELETE | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN)
        dispose = SetInfoRequest(info_type=InfoType.FILE,
                                 info_class=FileInfoClass.DISPOSITION,
                                 file_id=FileId.related(),
                                 buffer=FileDispositionInformation(True).pack())
        rename = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.RENAME,
                                file_id=FileId.related(),
                                buffer=FileRenameInformation(False, smb_path(aside)).pack())
        await self._on_path(create, rename, dispose)

    async def get_eas(self, path: str) -> list[tuple[bytes, bytes]]:
        """Every extended attribute of ``path`` (MS-FSCC FileFullEaInformation)."""
        create = self._create(path, access=AccessMask.FILE_READ_EA
                              | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN)
        return _eas_of((await self._on_path(create, self._query_eas(),
                                            allow=(Status.NO_EAS_ON_FILE,)))[1])

    async def set_ea(self, path: str, name: bytes, value: bytes) -> None:
        """Set one extended attribute; an empty ``value`` removes it."""
        await self.set_eas(path, [(name, value)])

    async def set_eas(self, path: str, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Set several extended attributes in one SET_INFO (empty values remove)."""
        create = self._create(path, access=AccessMask.FILE_WRITE_EA
                              | AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN)
        setea = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.FULL_EA,
                               file_id=FileId.related(), buffer=pack_eas(list(items)))
        await self._on_path(create, setea)

    async def link(self, src: str, dst: str) -> FileStat:
        """A hard link ``dst`` to the file ``src`` (MS-FSCC FileLinkInformation); the
        file's attributes after it (its link count), in the same round trip."""
        create = self._create(src, access=AccessMask.FILE_READ_ATTRIBUTES
                              | AccessMask.FILE_WRITE_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN,
                              options=CreateOptions.NON_DIRECTORY_FILE)
        link = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.LINK,
                              file_id=FileId.related(),
                              buffer=FileLinkInformation(False, smb_path(dst)).pack())
        replies = await self._on_path(create, link, self._query_all())
        return self._stat_of(dst, replies[2])

    async def truncate(self, path: str, size: int) -> None:
        create = self._create(path, access=AccessMask.FILE_WRITE_DATA,
                              disposition=CreateDisposition.OPEN,
                              options=CreateOptions.NON_DIRECTORY_FILE)
        setsize = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.END_OF_FILE,
                                 file_id=FileId.related(),
                                 buffer=FileEndOfFileInformation(size).pack())
        await self._on_path(create, setsize)

    async def set_times(self, path: str, *, atime_ns: int | None = None,
                        mtime_ns: int | None = None,
                        attributes: FileAttributes | None = None,
                        stat_after: bool = False) -> FileStat | None:
        """Set access and/or modification time, and/or the DOS attributes; None leaves a
        value as it is (0 on the wire, MS-FSCC 2.4.7). With ``stat_after`` the file's
        attributes as they then are come back from the same compound (what a utimensat
        is followed by); else None."""
        access = AccessMask.FILE_WRITE_ATTRIBUTES
        if stat_after:
            access |= AccessMask.FILE_READ_ATTRIBUTES
        create = self._create(path, access=access, disposition=CreateDisposition.OPEN)
        if attributes is not None and not attributes:
            attributes = FileAttributes.NORMAL  # 0 would mean "leave as it is"
        basic = FileBasicInformation(
            creation_time=0,
            last_access_time=0 if atime_ns is None else settable_filetime(atime_ns),
            last_write_time=0 if mtime_ns is None else settable_filetime(mtime_ns),
            change_time=0,
            file_attributes=0 if attributes is None else int(attributes),
        )
        setinfo = SetInfoRequest(info_type=InfoType.FILE, info_class=FileInfoClass.BASIC,
                                 file_id=FileId.related(), buffer=basic.pack())
        if not stat_after:
            await self._on_path(create, setinfo)
            return None
        return self._stat_of(path, (await self._on_path(create, setinfo,
                                                        self._query_all()))[2])

    async def statfs(self) -> FileFsFullSizeInformation:
        """Sizes of the share's volume (MS-FSCC 2.5.4), for statfs(2)."""
        create = self._create("", access=AccessMask.FILE_READ_ATTRIBUTES,
                              disposition=CreateDisposition.OPEN,
                              options=CreateOptions.DIRECTORY_FILE)
        query = QueryInfoRequest(info_type=InfoType.FILESYSTEM,
                                 info_class=FsInfoClass.FULL_SIZE, file_id=FileId.related(),
                                 output_buffer_length=64)
        replies = await self._on_path(create, query)
        return FileFsFullSizeInformation.unpack(
            QueryInfoResponse.unpack(replies[1].message).buffer
        )

    async def create_file(self, path: str, *, exclusive: bool, truncate: bool,
                          lease_key: bytes | None = None) -> Open:
        """Create (or open) a regular file for reading and writing: O_CREAT with
        O_EXCL / O_TRUNC semantics."""
        return await self.open(path, create_mode(exclusive=exclusive, truncate=truncate),
                               lease_key=lease_key)

    # ------------------------------------------------------------------ directories
    async def scandir(self, path: str = "") -> AsyncIterator[DirEntry]:
        """Every entry of a directory (without ``.`` and ``..``), page by page."""
        handle, answered = await self.open_listing(path)
        try:
            async for entry in iter_directory(handle, answered=answered):
                yield entry
        finally:
            with trio.CancelScope(shield=True):
                await handle.close()

    async def listdir(self, path: str = "") -> list[DirEntry]:
        return [entry async for entry in self.scandir(path)]

    # ------------------------------------------------------------------ whole files
    async def read_file(self, path: str) -> bytes:
        chunks: list[bytes] = []

        async def sink(data: bytes) -> None:
            chunks.append(data)

        await self.download(path, sink)
        return b"".join(chunks)

    async def write_file(self, path: str, data: bytes) -> None:
        view = memoryview(data)
        pos = 0

        async def source(n: int) -> bytes:
            nonlocal pos
            piece = bytes(view[pos : pos + n])
            pos += len(piece)
            return piece

        await self.upload(source, path)

    async def download(self, path: str, sink: Callable[[bytes], Awaitable[None]], *,
                       chunk: int | None = None, depth: int | None = None) -> int:
        async with self.opened(path, "r") as handle:
            kwargs = _transfer_kwargs(chunk or self.options.rsize, depth)
            return await handle.read_stream(sink, size_hint=handle.size, **kwargs)

    async def upload(self, source: Callable[[int], Awaitable[bytes]], path: str, *,
                     chunk: int | None = None, depth: int | None = None) -> int:
        async with self.opened(path, "w") as handle:
            return await handle.write_stream(
                source, **_transfer_kwargs(chunk or self.options.wsize, depth)
            )


def _transfer_kwargs(chunk: int | None, depth: int | None) -> dict[str, int]:
    kwargs: dict[str, int] = {}
    if chunk:
        kwargs["chunk"] = chunk
    if depth:
        kwargs["depth"] = depth
    return kwargs


@asynccontextmanager
async def connect(
    url: str | ShareURL, options: Options | str | None = None
) -> AsyncIterator[Share]:
    """Connect, authenticate and tree-connect to ``//host[:port]/share``; a lost
    connection is brought back (link.py) while the share is in use."""
    share_url = parse_url(url) if isinstance(url, str) else url
    opts = parse_options(options) if isinstance(options, str) or options is None else options
    opts.resolved_credentials()  # a bad credentials file fails before any connection
    async with open_nursery() as nursery:
        link = Link(share_url, opts, nursery)
        try:
            try:
                tree = await link.start()
            except NotADiskShare as exc:
                raise UsageError(str(exc)) from None
            share = Share(share_url, tree, opts, link)
            log.info("connected to %s over %s%s", share_url, tree.conn.transport.kind.upper(),
                     ", SMB encryption on" if tree.encrypt else ", signed")
            yield share
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()


__all__ = ["DirEntry", "FileStat", "Sequence", "Share", "connect", "create_mode", "smb_path"]
