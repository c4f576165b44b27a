"""One failure reaches many callers as its own type (issue 23 item 4).

A connection that dies fails every request waiting on it with the error that killed it,
and a reconnect that gives up fails every caller waiting on it. Each caller raises its
own copy: one exception object raised in several tasks would gather all their
tracebacks. The copy is of the error's own type, with its attributes, whatever its
constructor takes (SMBError takes a status, not a message).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio
import trio.testing

from quicfs.client.connection import open_connection
from quicfs.client.link import Link, _Recovery
from quicfs.errors import QuicfsError, SMBError
from quicfs.options import Options
from quicfs.smb2.constants import Command
from quicfs.smb2.control import EchoRequest
from quicfs.smb2.header import Header
from quicfs.smb2.status import Status
from quicfs.transport.framing import FramedStream
from quicfs.url import parse_url
from tests.unit.test_hostile_peer import negotiate_body, response


class Refused(QuicfsError):
    """An error whose constructor is not (message,): rebuilt from its args it failed."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port} refused us")
        self.host, self.port = host, port


class FailingStream(FramedStream):
    """A client side whose next receive raises ``failure`` once one is set."""

    failure: BaseException | None = None

    async def receive_message(self) -> bytearray:
        message = await super().receive_message()
        if self.failure is not None:
            raise self.failure
        return message


@pytest.mark.parametrize("error", [Refused("server", 445),
                                   SMBError(Status.NETWORK_NAME_DELETED, "gone")],
                         ids=["other-signature", "smb-error"])
async def test_a_dead_connection_fails_each_caller_with_the_error_itself(error):
    a, b = trio.testing.memory_stream_pair()
    client_side = FailingStream(a, kind="tcp", peer="test")
    server_side = FramedStream(b, kind="tcp", peer="client")
    callers = 3
    failed: list[BaseException] = []

    async def peer() -> None:
        h = Header.unpack(await server_side.receive_message())
        await server_side.send_message(response(Command.NEGOTIATE, h.message_id,
                                                negotiate_body()))
        for _ in range(callers):
            await server_side.receive_message()
        client_side.failure = error
        await server_side.send_message(b"woken")  # the receive that fails

    async def caller(conn) -> None:
        with pytest.raises(QuicfsError) as caught:
            await conn.request(EchoRequest())
        failed.append(caught.value)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer)
            async with open_connection(client_side, server_name="test") as conn:
                async with trio.open_nursery() as callers_nursery:
                    for _ in range(callers):
                        callers_nursery.start_soon(caller, conn)
                # The connection is dead: a request made now fails the same way.
                with pytest.raises(QuicfsError) as later:
                    await conn.request(EchoRequest())
                failed.append(later.value)

    assert len(failed) == callers + 1
    assert len({id(exc) for exc in failed} | {id(error)}) == callers + 2  # each its own
    for exc in failed:
        assert type(exc) is type(error)
        assert vars(exc) == vars(error)
        assert exc.args == error.args
        assert exc.__cause__ is error


async def test_a_reconnect_that_fails_fails_each_caller_with_its_error():
    broken = SimpleNamespace(closed=True)
    error = Refused("server", 445)
    async with trio.open_nursery() as nursery:
        link = Link(parse_url("//server/share"), Options(), nursery)
        link.tree = SimpleNamespace(conn=broken)  # type: ignore[assignment]
        link._recovery = _Recovery(error=error)
        link._recovery.done.set()
        with pytest.raises(Refused) as caught:
            await link.recover(broken)  # type: ignore[arg-type]
    assert caught.value is not error
    assert (caught.value.host, caught.value.port, caught.value.args) == (
        "server", 445, error.args)
