"""An open file or directory on a tree (MS-SMB2 3.2.4.3 ff.): read, write, query, set, flush,
close; and streaming transfers with many requests in flight."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from quicfs.client.connection import Reply
from quicfs.client.depth import Depth
from quicfs.client.inorder import InOrder, Turn
from quicfs.client.nursery import open_nursery
from quicfs.client.tree import Tree
from quicfs.errors import MalformedError, ProtocolError, SMBError, StaleHandle
from quicfs.smb2.constants import (
    CloseFlags,
    CreateAction,
    CreateDisposition,
    FileAttributes,
    FileInfoClass,
    InfoType,
    LeaseState,
    LockFlags,
    OplockLevel,
)
from quicfs.smb2.create import (
    CreateRequest,
    CreateRequestContext,
    CreateResponse,
    DurableHandleReconnectV2,
    DurableHandleRequestV2,
    DurableHandleResponseV2,
    EaBufferRequest,
    LeaseRequestV2,
    LeaseResponseV1,
    LeaseResponseV2,
    OnDiskIdResponse,
)
from quicfs.smb2.ea import unpack_eas
from quicfs.smb2.fileid import FileId
from quicfs.smb2.info import (
    FileAllInformation,
    QueryInfoRequest,
    QueryInfoResponse,
    SetInfoRequest,
)
from quicfs.smb2.io import (
    CloseRequest,
    CloseResponse,
    FlushRequest,
    LockElement,
    LockRequest,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    WriteResponse,
)
from quicfs.smb2.lxmeta import LxMeta
from quicfs.smb2.status import Status, is_error

#: Reads and writes go in pieces of this size at most (fewer credits per request, and
#: several in flight keep the pipe full).
DEFAULT_CHUNK = 1024 * 1024
#: Chunks in flight of a transfer: where it starts, and how far it may grow to fill a
#: long path (depth.py); 32 MiB is 250 ms at 1 Gbit/s, and what our SMB credit target
#: (smb2/credits.py) lets be in flight.
DEFAULT_DEPTH = 8
MAX_DEPTH = 32

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileStat:
    """What a stat needs, in Unix units (ns since the epoch)."""

    name: str
    size: int
    allocation_size: int
    attributes: FileAttributes
    creation_ns: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    file_id: int = 0
    nlink: int = 1
    #: Bytes of extended attributes the file has (MS-FSCC 2.4.12): 0 means none to ask for.
    ea_size: int = 0
    #: Linux owner and mode from its EAs, when they were asked for (mount option metadata).
    lx: LxMeta | None = None

    @property
    def is_dir(self) -> bool:
        return bool(self.attributes & FileAttributes.DIRECTORY)

    @classmethod
    def from_info(cls, name: str, info: object, *, file_id: int, nlink: int = 1) -> FileStat:
        """From any MS-FSCC structure with the usual times, sizes and attributes
        (directory entries, FileAllInformation)."""
        from quicfs.smb2.filetime import filetime_to_ns

        get = info.__getattribute__
        return cls(
            name=name,
            size=get("end_of_file"),
            allocation_size=get("allocation_size"),
            attributes=FileAttributes(get("file_attributes")),
            creation_ns=filetime_to_ns(get("creation_time")),
            atime_ns=filetime_to_ns(get("last_access_time")),
            mtime_ns=filetime_to_ns(get("last_write_time")),
            ctime_ns=filetime_to_ns(get("change_time")),
            file_id=file_id,
            nlink=nlink,
            ea_size=getattr(info, "ea_size", 0),
        )


def _written(reply: Reply, offset: int, length: int) -> int:
    """The count of a WRITE's answer, which must be all ``length`` bytes: a short
    write on a disk share means the server could not take it all."""
    count = WriteResponse.unpack(reply.message).count
    if count != length:
        raise ProtocolError(f"server wrote {count} of {length} bytes at {offset}")
    return count


def read_answer(reply: Reply, length: int) -> memoryview:
    """The data of a successful READ asked for ``length`` bytes (none at END_OF_FILE);
    MalformedError if the server sent more than asked."""
    if reply.status == Status.END_OF_FILE:
        return memoryview(b"")
    data = ReadResponse.unpack(reply.message).data
    if len(data) > length:
        raise MalformedError(f"READ returned {len(data)} bytes for {length} asked")
    return data


class Open:
    """One open of a file or directory. Its maker puts it on its tree's list of opens
    (``tree.opens``, as Share does) for a reconnect to reopen it; ``close`` takes it off."""

    def __init__(self, tree: Tree, file_id: FileId, name: str, created: CreateResponse,
                 request: CreateRequest | None = None, *, head: bytes | None = None,
                 disposable: bool = False) -> None:
        self.tree = tree
        self._head = head
        self.file_id = file_id
        self.name = name
        self.created = created
        #: The CREATE that made this open: a reopen after a reconnect repeats it.
        self.request = request
        self.closed = False
        self.stale = False
        #: Kept only for a lease (a directory's, dirleases.py): after a reconnect it is
        #: let go, not reopened.
        self.disposable = disposable
        #: The server's promise to keep this open across a lost connection, and the
        #: file's identity: both from the first CREATE (a reconnect's answer may carry
        #: neither, and they stay true of this open).
        self.durable = created.context(DurableHandleResponseV2)
        self.disk_id = created.context(OnDiskIdResponse)
        #: The file's latest time when we opened it: it existed by then.
        self.seen = max(created.creation_time, created.last_write_time, created.change_time)
        params = tree.conn.params
        assert params is not None
        self.max_read = params.max_read_size
        self.max_write = params.max_write_size

    def take_head(self) -> bytes | None:
        """The file's first bytes as read with the CREATE (Share.open ``head``), all of
        it if shorter than asked; None if not read. Given once: they are the file as it
        was when opened, which a handle kept open longer outlives."""
        head, self._head = self._head, None
        return head

    def created_stat(self) -> FileStat | None:
        """The attributes of a file this open has just created, from the CREATE response
        itself: its on-disk id (QFid) is the file's number and a new file has one link.
        Saves a round trip per create(2). None when the open found an existing file."""
        if self.created.create_action != CreateAction.CREATED or self.disk_id is None \
                or not self.disk_id.disk_file_id:
            return None
        return FileStat.from_info(self.name.rsplit("/", 1)[-1], self.created,
                                  file_id=self.disk_id.disk_file_id)

    async def reopen(self) -> bool:
        """Reclaim this open on a new connection (3.2.4.4): the same name, the CreateGuid
        it was made with, and its lease key (a leased durable open must name its lease).

        A server that kept nothing of it (Samba loses durable state with the smbd
        process that held it) gets the name opened again, as cifs.ko does, but only if
        it is still the same file (same on-disk id): never another file that took the
        name. True if the durable open came back, False if reopened by name; raises
        StaleHandle when neither works."""
        guid = self._create_guid
        if self.durable is None or self.request is None or guid is None:
            raise StaleHandle(f"{self.name} was not durable")
        contexts: list[CreateRequestContext] = [
            DurableHandleReconnectV2(file_id=self.file_id, create_guid=guid)]
        contexts += [c for c in self.request.contexts if isinstance(c, LeaseRequestV2)]
        try:
            created = await self._create_again(
                dataclasses.replace(self.request, contexts=tuple(contexts)))
            durable = True
        except SMBError as exc:
            created = await self._open_by_name(exc)
            log.warning("%s reopened by name: the server refused its durable open (%s)",
                        self.name, exc)
            durable = False
        old, self.created = self.file_id, created
        self.file_id = created.file_id
        self.tree.moved(old, self.file_id)
        return durable

    async def _create_again(self, req: CreateRequest) -> CreateResponse:
        return CreateResponse.unpack((await self.tree.request_now(req)).message)

    async def _open_by_name(self, why: SMBError) -> CreateResponse:
        assert self.request is not None
        before = self.disk_id
        if before is None or not before.disk_file_id:
            raise StaleHandle(f"{self.name}: the server lost the open ({why}) and cannot "
                              "tell whether the name is still the same file") from why
        # (Not the EAs a new file was made with: they were for its making.)
        contexts = tuple(DurableHandleRequestV2(timeout=self.durable.timeout)  # type: ignore[union-attr]
                         if isinstance(c, DurableHandleRequestV2) else c
                         for c in self.request.contexts if not isinstance(c, EaBufferRequest))
        # OPEN only: never create or truncate a file on the way back.
        req = dataclasses.replace(self.request, disposition=CreateDisposition.OPEN,
                                  contexts=contexts)
        try:
            created = await self._create_again(req)
        except SMBError as exc:
            raise StaleHandle(f"{self.name} is gone since the connection was lost "
                              f"({exc})") from exc
        after = created.context(OnDiskIdResponse)
        # The on-disk id alone is not enough: file systems hand a deleted file's inode
        # number to the next file made. A file made after our open was is another file.
        # (Not equal creation times: Samba reports a file's birth time at its first
        # open and its stored DOS creation time afterwards, which may be later.)
        if after is None or (after.disk_file_id, after.volume_id) != (
                before.disk_file_id, before.volume_id) or created.creation_time > self.seen:
            await self.tree.request_now(CloseRequest(file_id=created.file_id))
            raise StaleHandle(f"{self.name} was replaced by another file while the "
                              "connection was lost")
        self.request = req
        return created

    @property
    def _create_guid(self) -> uuid.UUID | None:
        for c in self.request.contexts if self.request is not None else ():
            if isinstance(c, DurableHandleRequestV2):
                return c.create_guid
        return None

    def mark_stale(self) -> None:
        self.stale = True
        self.tree.stale(self.file_id)

    @property
    def is_dir(self) -> bool:
        return bool(self.created.file_attributes & FileAttributes.DIRECTORY)

    @property
    def size(self) -> int:
        return self.created.end_of_file

    @property
    def _lease(self) -> LeaseResponseV1 | LeaseResponseV2 | None:
        if self.created.oplock_level != OplockLevel.LEASE:
            return None
        return self.created.context(LeaseResponseV2) or self.created.context(LeaseResponseV1)

    @property
    def lease_state(self) -> LeaseState:
        """The caching the server granted at CREATE (none without a lease)."""
        lease = self._lease
        return lease.state if lease is not None else LeaseState.NONE

    @property
    def lease_key(self) -> bytes | None:
        lease = self._lease
        return lease.lease_key if lease is not None else None

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer only at end of file."""
        out = bytearray()
        while length > 0:
            piece = min(length, self.max_read, DEFAULT_CHUNK * 8)
            data = await self._read_once(offset, piece)
            out += data
            if len(data) < piece:
                break
            offset += len(data)
            length -= len(data)
        return bytes(out)

    async def _read_once(self, offset: int, length: int) -> memoryview:
        reply = await self.tree.request(
            ReadRequest(file_id=self.file_id, offset=offset, length=length),
            allowed=(Status.END_OF_FILE,),
        )
        return read_answer(reply, length)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        """Write all of ``data`` at ``offset`` (several requests if it is large)."""
        view = memoryview(data)
        done = 0
        while done < len(view) or not view:
            piece = view[done : done + min(self.max_write, DEFAULT_CHUNK * 8)]
            count = await self._write_once(offset + done, piece)
            done += count
            if not view:
                break
        return done

    async def _write_once(self, offset: int, data: memoryview | bytes) -> int:
        reply = await self.tree.request(
            WriteRequest(file_id=self.file_id, offset=offset, data=bytes(data))
        )
        return _written(reply, offset, len(data))

    async def lock(self, offset: int, length: int, *, exclusive: bool = True,
                   wait: bool = False) -> None:
        """Take a byte-range lock (3.2.4.19). With ``wait`` the server may hold the request
        (STATUS_PENDING) until the range is free; cancelling the caller cancels it."""
        flags = LockFlags.EXCLUSIVE_LOCK if exclusive else LockFlags.SHARED_LOCK
        if not wait:
            flags |= LockFlags.FAIL_IMMEDIATELY
        await self.tree.request(LockRequest(
            file_id=self.file_id, locks=(LockElement(offset, length, flags),)
        ))

    async def unlock(self, offset: int, length: int) -> None:
        await self.tree.request(LockRequest(
            file_id=self.file_id, locks=(LockElement(offset, length, LockFlags.UNLOCK),)
        ))

    async def flush(self) -> None:
        await self.tree.request(FlushRequest(file_id=self.file_id))

    async def query_info(self, info_class: int, *, info_type: int = InfoType.FILE,
                         output_length: int = 4096, flags: int = 0) -> memoryview:
        reply = await self.tree.request(QueryInfoRequest(
            info_type=info_type, info_class=info_class, file_id=self.file_id,
            output_buffer_length=output_length, flags=flags,
        ))
        return QueryInfoResponse.unpack(reply.message).buffer

    async def stat(self) -> FileStat:
        """The file's attributes through this handle (FileAllInformation, MS-FSCC
        2.4.2): it works once every name of the file is gone, too."""
        info = FileAllInformation.unpack(await self.query_info(FileInfoClass.ALL))
        return FileStat.from_info(self.name.rpartition("/")[2], info,
                                  file_id=info.index_number, nlink=info.number_of_links)

    async def get_eas(self) -> list[tuple[bytes, bytes]]:
        """Every extended attribute of the file, through this handle."""
        try:
            # SL_RESTART_SCAN (MS-SMB2 2.2.37): the whole list; a handle remembers where
            # its last EA query ended.
            buf = await self.query_info(FileInfoClass.FULL_EA, output_length=65536,
                                        flags=0x01)
        except SMBError as exc:
            if exc.status == Status.NO_EAS_ON_FILE:
                return []
            raise
        return unpack_eas(buf)

    async def set_info(self, info_class: int, data: bytes, *,
                       info_type: int = InfoType.FILE) -> None:
        await self.tree.request(SetInfoRequest(
            info_type=info_type, info_class=info_class, file_id=self.file_id, buffer=data,
        ))

    async def set_write_time(self, ns: int) -> None:
        """Set LastWriteTime and ChangeTime (ns since the epoch) through this handle."""
        await self.set_times(mtime_ns=ns, ctime_ns=ns)

    async def set_times(self, *, atime_ns: int | None = None, mtime_ns: int | None = None,
                        ctime_ns: int | None = None) -> None:
        """Set the times given (ns since the epoch) through this handle; None leaves
        one as it is (0 on the wire, MS-FSCC 2.4.7). The server reports them to other
        opens at once (Samba keeps them with the file's share modes). A WRITE through
        the handle after them may move the write time again (Samba 4.22 does, whatever
        MS-FSA 2.1.5.14.2 says): they go after the last one (``write_then``)."""
        await self.tree.request(self.times_request(atime_ns=atime_ns, mtime_ns=mtime_ns,
                                                   ctime_ns=ctime_ns))

    def times_request(self, *, atime_ns: int | None = None, mtime_ns: int | None = None,
                      ctime_ns: int | None = None) -> SetInfoRequest:
        from quicfs.smb2.filetime import settable_filetime
        from quicfs.smb2.info import FileBasicInformation

        def wire(ns: int | None) -> int:
            return 0 if ns is None else settable_filetime(ns)

        return SetInfoRequest(
            info_type=InfoType.FILE, info_class=FileInfoClass.BASIC, file_id=self.file_id,
            buffer=FileBasicInformation(last_access_time=wire(atime_ns),
                                        last_write_time=wire(mtime_ns),
                                        change_time=wire(ctime_ns)).pack())

    async def attempt(self, req: SetInfoRequest) -> SMBError | None:
        """Send ``req`` (of this handle); what it met, not raised."""
        try:
            await self.tree.request(req)
        except SMBError as exc:
            return exc
        return None

    async def write_then(self, offset: int, data: bytes, then: SetInfoRequest
                         ) -> SMBError | None:
        """WRITE ``data`` (one request's worth) and then ``then``, in order, as one related
        compound (3.2.4.1.4); what ``then`` met, not raised: the caller's to weigh. Raises
        if the WRITE fails."""
        wrote, after = await self.tree.chain([
            WriteRequest(file_id=self.file_id, offset=offset, data=bytes(data)),
            dataclasses.replace(then, file_id=FileId.related())])
        if is_error(wrote.status):
            raise SMBError(wrote.status)
        _written(wrote, offset, len(data))
        return SMBError(after.status) if is_error(after.status) else None

    async def set_end_of_file(self, size: int) -> None:
        from quicfs.smb2.info import FileEndOfFileInformation

        await self.set_info(FileInfoClass.END_OF_FILE, FileEndOfFileInformation(size).pack())

    async def close(self) -> CloseResponse | None:
        if self.closed:
            return None
        self.closed = True
        self.tree.opens.discard(self)
        if self.stale or (self.tree.conn.closed and self.tree.recover is None):
            return None
        reply = await self.tree.request(
            CloseRequest(file_id=self.file_id, flags=CloseFlags.POSTQUERY_ATTRIB)
        )
        return CloseResponse.unpack(reply.message)

    # ------------------------------------------------------------------ streaming
    async def read_stream(
        self,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        offset: int = 0,
        length: int | None = None,
        chunk: int = DEFAULT_CHUNK,
        depth: int | None = None,
        size_hint: int | None = None,
    ) -> int:
        """Read ``length`` bytes (default: to the end of file) with up to ``depth`` READs
        in flight (None: as many as the path needs, depth.py), handing them to ``sink`` in
        order. Memory stays within depth (MAX_DEPTH) * chunk.
        Past ``size_hint`` (the size the file had when opened) only one read is in flight,
        so a file that did not grow costs one extra round trip, not ``depth``."""
        chunk = max(1, min(chunk, self.max_read))
        end = None if length is None else offset + length
        total = 0
        eof = False
        next_offset = offset
        window: list[tuple[int, trio.Event, list[memoryview]]] = []
        tuner = _depth(depth)
        order = InOrder()  # the READs go out by offset (inorder.py)

        async def fetch(at: int, size: int, event: trio.Event, box: list[memoryview],
                        turn: Turn) -> None:
            await turn.wait()
            sent = trio.current_time()
            box.append(await self._read_once(at, size))
            tuner.answered(trio.current_time() - sent)
            event.set()

        async with open_nursery() as nursery:
            while True:
                while (
                    not eof
                    and len(window) < tuner.value
                    and (end is None or next_offset < end)
                    and not (size_hint is not None and next_offset >= size_hint and window)
                ):
                    size = chunk if end is None else min(chunk, end - next_offset)
                    event, box = trio.Event(), []
                    nursery.start_soon(fetch, next_offset, size, event, box, order.place())
                    window.append((size, event, box))
                    next_offset += size
                if not window:
                    break
                size, event, box = window.pop(0)
                await event.wait()
                data = box[0]
                if data:
                    await sink(bytes(data))
                    total += len(data)
                if len(data) < size:
                    # End of file: later reads in flight return nothing, drop them.
                    eof = True
                    nursery.cancel_scope.cancel()
                    break
        return total

    async def write_stream(
        self,
        source: Callable[[int], Awaitable[bytes]],
        *,
        offset: int = 0,
        chunk: int = DEFAULT_CHUNK,
        depth: int | None = None,
    ) -> int:
        """Write what ``source(n)`` yields until it returns b"", with up to ``depth``
        WRITEs in flight (None: as many as the path needs, depth.py). Any failed write
        fails the whole transfer."""
        chunk = max(1, min(chunk, self.max_write))
        tuner = _depth(depth)
        order = InOrder()  # the WRITEs go out by offset (inorder.py)
        inflight = 0
        answered = trio.Event()

        async def send(at: int, data: bytes, turn: Turn) -> None:
            nonlocal inflight, answered
            try:
                await turn.wait()
                sent = trio.current_time()
                await self._write_once(at, data)
                tuner.answered(trio.current_time() - sent)
            finally:
                inflight -= 1
                answered.set()
                answered = trio.Event()

        total = 0
        async with open_nursery() as nursery:
            at = offset
            while True:
                while inflight >= tuner.value:
                    await answered.wait()
                data = await source(chunk)
                if not data:
                    break
                inflight += 1
                nursery.start_soon(send, at, data, order.place())
                at += len(data)
                total += len(data)
        return total


def _depth(depth: int | None) -> Depth:
    """A fixed depth when the caller names one, else one that follows the path."""
    return Depth(depth, depth) if depth else Depth(DEFAULT_DEPTH, MAX_DEPTH)
