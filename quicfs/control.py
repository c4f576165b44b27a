"""The mount's control socket: `quicfs stats MOUNTPOINT` asks the serving process.

One Unix stream socket per mount, in a root-only directory, named by a hash of the mount
point (so the client finds it from the path alone). A request is one line, the answer one
line of JSON:

    stats      transport, server, RTT, congestion window, bytes, losses, in flight, and the
               counters of reconnects, migrations, replays and reopened handles
    migrate    move the QUIC connection to a new local port (tests and diagnosis: what a
               laptop changing networks does)
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from quicfs.errors import UsageError
from quicfs.fs.kernel import mountpoint_path

log = logging.getLogger("quicfs")

Handler = Callable[[str], Awaitable[dict[str, Any]]]


def runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/quicfs")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or _tmp_dir()) / "quicfs"


def _tmp_dir() -> str:
    return f"/tmp/quicfs-{os.geteuid()}"


def private_dir() -> Path:
    """runtime_dir(), made or found private to this user, else a UsageError.

    Without XDG_RUNTIME_DIR (made by the login manager, the user's, 0700) the directory
    is in /tmp, where another user may have made it first, or a symbolic link by its name,
    to read or replace the control socket and point the log at a file of ours. So each
    directory we may have made there is made with mkdir (which neither follows a link nor
    takes an existing name) and then checked with lstat: ours, a directory, 0700."""
    path = runtime_dir()
    for d in ([path.parent] if str(path.parent) == _tmp_dir() else []) + [path]:
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(f"cannot make {d}: {exc.strerror}") from None
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{d} is not a directory (another user's symbolic link?); "
                             "remove it, or set XDG_RUNTIME_DIR")
        if st.st_uid != os.geteuid():
            raise UsageError(f"{d} belongs to uid {st.st_uid}, not to you (uid "
                             f"{os.geteuid()}): remove it, or set XDG_RUNTIME_DIR")
        if st.st_mode & 0o077:
            raise UsageError(f"{d} is open to other users (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); run chmod 700 {d}")
    return path


def socket_path(mountpoint: str) -> Path:
    # Named without touching the mount: `quicfs stats` is wanted most while a hard mount
    # waits for its server. fsencode: a mount point's name need not be UTF-8.
    key = hashlib.sha256(os.fsencode(mountpoint_path(mountpoint))).hexdigest()[:24]
    return runtime_dir() / f"{key}.sock"


def log_path(mountpoint: str) -> Path:
    """The detached mount's log (warnings: reconnects, migrations, lost handles)."""
    private_dir()
    return socket_path(mountpoint).with_suffix(".log")


def ask(mountpoint: str, request: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """One request to the mount at ``mountpoint`` (blocking: the CLI's side)."""
    private_dir()  # a socket in another user's directory may be theirs
    path = socket_path(mountpoint)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise UsageError(f"{mountpoint} is not a quicfs mount (no control socket at "
                             f"{path})") from None
        s.sendall(request.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise UsageError(f"the quicfs mount at {mountpoint} did not answer") from None
    finally:
        s.close()
    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise UsageError(answer["error"])
    return answer


class EventLog(logging.Handler):
    """The last warnings of the mount (reconnects, migrations, lost handles), for stats:
    a detached mount has no terminal to print them on."""

    def __init__(self, size: int = 50) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        import time

        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        self.lines.append(f"{stamp} {record.getMessage()}")


__all__ = ["EventLog", "Handler", "ask", "log_path", "private_dir", "socket_path"]
