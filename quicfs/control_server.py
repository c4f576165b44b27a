"""The serving side of the mount's control socket (quicfs/control.py says what it
answers): one Unix stream socket, a request line in, a JSON line out.

Apart from control.py so that what the mount command runs before it starts the serving
process (control.private_dir) does not load trio.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import trio

from quicfs.control import Handler, private_dir
from quicfs.errors import QuicfsError


async def serve(path: Path, handler: Handler, *,
                task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on the socket at ``path`` until cancelled; the socket goes with us.

    The caller computes ``path`` (socket_path) before the mount exists."""
    _clear(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(8)
        listener = trio.SocketListener(sock)
        task_status.started(path)

        async def one(stream: trio.SocketStream) -> None:
            async with stream:
                with trio.move_on_after(30):
                    request = (await stream.receive_some(1024)).decode(errors="replace")
                    try:
                        answer = await handler(request.strip())
                    except QuicfsError as exc:
                        answer = {"error": str(exc)}
                    await stream.send_all(json.dumps(answer).encode() + b"\n")

        await trio.serve_listeners(one, [listener])
    finally:
        sock.close()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 (one unlink at exit, tmpfs)


def _clear(path: Path) -> None:
    """The socket's directory, private; a socket left by a killed mount goes."""
    private_dir()
    path.unlink(missing_ok=True)


__all__ = ["serve"]
