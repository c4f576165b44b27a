"""A connected share (MS-SMB2 3.2.4.2.4): TREE_CONNECT, and the requests made on it."""

from __future__ import annotations

from collections.abc import Sequence

from quicfs.client.connection import Reply, Request
from quicfs.client.session import Session
from quicfs.errors import UsageError
from quicfs.smb2.constants import ShareFlags, ShareType
from quicfs.smb2.control import TreeDisconnectRequest
from quicfs.smb2.tree import TreeConnectRequest, TreeConnectResponse


class Tree:
    def __init__(self, session: Session, server: str, share: str) -> None:
        self.session = session
        self.conn = session.conn
        self.server = server
        self.share = share
        self.tree_id = 0
        self.share_flags = ShareFlags.NONE
        self.encrypt = False

    @property
    def unc(self) -> str:
        return f"\\\\{self.server}\\{self.share}"

    async def connect(self) -> None:
        reply = await self.conn.request(
            TreeConnectRequest(self.unc), session=self.session,
            encrypt=self.session.encrypt_data,
        )
        resp = TreeConnectResponse.unpack(reply.message)
        self.tree_id = reply.header.tree_id
        self.share_flags = resp.share_flags
        if resp.share_type != ShareType.DISK:
            await self.disconnect()
            raise NotADiskShare(self.share)
        # 3.2.5.5: a share that asks for encryption gets it even if the session does not.
        wants = bool(resp.share_flags & ShareFlags.ENCRYPT_DATA) or self.session.encrypt_data
        params = self.conn.params
        transport_secured = params is not None and params.transport_security
        self.encrypt = (wants and not transport_secured) or self.session.seal
        if self.encrypt and self.session.cipher is None:
            from quicfs.errors import ProtocolError

            raise ProtocolError(f"share {self.share} requires encryption; no cipher negotiated")

    async def request(self, req: Request, *, allowed: Sequence[int] = ()) -> Reply:
        return await self.conn.request(req, session=self.session, tree_id=self.tree_id,
                                       encrypt=self.encrypt, allowed=allowed)

    async def chain(self, reqs: Sequence[Request]) -> list[Reply]:
        """A related compound (3.2.4.1.4): later requests act on the first's FileId."""
        return await self.conn.send_chain(reqs, session=self.session, tree_id=self.tree_id,
                                          encrypt=self.encrypt, related=True)

    async def disconnect(self) -> None:
        if self.conn.closed or not self.tree_id:
            return
        tree_id, self.tree_id = self.tree_id, 0
        await self.conn.request(TreeDisconnectRequest(), session=self.session, tree_id=tree_id,
                                encrypt=self.encrypt)


class NotADiskShare(UsageError):
    def __init__(self, share: str) -> None:
        super().__init__(f"share {share} is not a disk share")
