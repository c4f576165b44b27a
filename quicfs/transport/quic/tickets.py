"""TLS session tickets (RFC 8446 4.6.1), which let the next handshake resume (RFC 8446
2.2: shorter, no certificate): the client keeps one per server on disk
(:class:`TicketStore`), the server keeps those it issued in memory
(:class:`ServerTickets`), each used once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import time
from collections import OrderedDict
from pathlib import Path

from qh3.tls import SessionTicket

from quicfs.private import PrivateFileError, PrivateFileMissing, read_private

log = logging.getLogger("quicfs.quic")

#: A ticket file larger than this is not a ticket of ours (they are some hundreds of bytes).
MAX_TICKET_FILE = 64 * 1024
#: What a stored ticket is made of; anything else in the file is refused unread.
_TICKET_CLASSES = frozenset({("qh3.tls", "SessionTicket"), ("qh3.tls", "CipherSuite"),
                             ("datetime", "datetime"), ("datetime", "timezone"),
                             ("datetime", "timedelta")})


class _TicketUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _TICKET_CLASSES:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a ticket")
        return super().find_class(module, name)


class TicketStore:
    """TLS session tickets per server, one 0600 file each under the user's cache dir, so
    the next connection resumes (a shorter handshake, no certificate) instead of a full
    one.

    A ticket holds a resumption secret, and its file is read with pickle: a file is used
    only if it is a regular file (never through a symlink), owned by this user and
    readable by nobody else (private.py), and only the classes a ticket is made of are
    unpickled."""

    def __init__(self, directory: str | None = None) -> None:
        base = directory or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        self.dir = Path(base) / "quicfs" / "tickets" if directory is None else Path(base)

    def _path(self, server: str, port: int, policy: str) -> Path:
        name = f"{server}_{port}_{policy}"
        safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)
        return self.dir / safe

    def load(self, server: str, port: int, policy: str) -> object | None:
        path = self._path(server, port, policy)
        try:
            data = read_private(path, max_size=MAX_TICKET_FILE)
        except PrivateFileMissing:
            return None
        except PrivateFileError as exc:
            log.warning("session ticket %s not used: it%s", path, exc.detail)
            return None
        try:
            return _TicketUnpickler(io.BytesIO(data)).load()
        except Exception:
            return None  # damaged, or not a ticket: a full handshake, and a new one

    def save(self, server: str, port: int, policy: str, ticket: object) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self._path(server, port, policy)
            tmp = path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # left by a crash; O_EXCL below never follows a planted link
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pickle.dumps(ticket))
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError) as exc:
            log.debug("cannot store session ticket: %s", exc)

    def forget(self, server: str, port: int, policy: str) -> None:
        with contextlib.suppress(OSError):
            self._path(server, port, policy).unlink()


class ServerTickets:
    """The session tickets this server issued, for resumption (RFC 8446 4.6.1): each
    used once, at most ``max_count`` kept, none older than ``max_age`` seconds. One
    full handshake makes one; without a bound, handshakes alone would grow memory."""

    def __init__(self, max_count: int = 4096, max_age: float = 3600.0) -> None:
        self.max_count = max_count
        self.max_age = max_age
        self._tickets: OrderedDict[bytes, tuple[float, SessionTicket]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tickets)

    def add(self, ticket: SessionTicket) -> None:
        now = time.monotonic()
        self._tickets[ticket.ticket] = (now, ticket)
        while self._tickets:
            label, (made, _) = next(iter(self._tickets.items()))
            if len(self._tickets) <= self.max_count and now - made <= self.max_age:
                break
            del self._tickets[label]

    def take(self, label: bytes) -> SessionTicket | None:
        made, ticket = self._tickets.pop(label, (0.0, None))
        if ticket is None or time.monotonic() - made > self.max_age or not ticket.is_valid:
            return None
        return ticket
