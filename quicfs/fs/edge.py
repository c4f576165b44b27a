"""The FUSE edge: where the client's errors become errno, and the mount's options
libfuse's.

Errors are values with meaning everywhere below (quicfs.errors); here, and nowhere else,
each becomes the errno the kernel hands the program. A bug of ours costs one call (EIO,
its traceback logged), never the mount.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import pyfuse3
import trio

from quicfs.errors import ConnectionLost, QuicfsError, SMBError
from quicfs.fs import mountflags
from quicfs.fs.caller import calling
from quicfs.fs.inodes import Unnamed
from quicfs.options import Options

log = logging.getLogger("quicfs.fs")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


#: Handlers that name no caller: theirs is the process that opened the handle.
BY_HANDLE = frozenset({"read", "write", "flush", "fsync"})
#: Handlers that change names, data or metadata on the server (writes land at flush,
#: fsync and release too): while one is under way, no listing taken for a lookup is
#: kept (lookup.Lookup._snapshot), since it may show the server before or after the change.
CHANGING = frozenset({"setattr", "mkdir", "mknod", "rmdir", "unlink", "rename", "symlink",
                       "link", "create", "setxattr", "removexattr", "write", "flush",
                       "fsync", "release"})


class RepeatFilter:
    """One log line for an error that every call meets (a session that could not be
    renewed, a soft mount's lost server): a program walking a tree would otherwise write
    one line per file. The same line again within ``window`` seconds is counted, not
    logged; the next one logged says how many were left out."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._last: str | None = None
        self._since = 0.0
        self._left_out = 0

    def warn(self, func: str, exc: BaseException) -> None:
        line, now = str(exc), time.monotonic()
        if line == self._last and now - self._since < self.window:
            self._left_out += 1
            return
        more = (f" (and {self._left_out} more calls failed the same way)"
                if self._left_out else "")
        self._last, self._since, self._left_out = line, now, 0
        log.warning("%s: %s%s", func, line, more)


_repeats = RepeatFilter()


def fuse_errors(func: F) -> F:
    """Map the client's errors to FUSEError(errno): the one place it happens. And name
    the call's caller, whose signals may interrupt a wait for a lost server
    (client/interrupt.py); and count the handlers under way that change the server."""
    by_handle = func.__name__ in BY_HANDLE
    changing = func.__name__ in CHANGING

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not changing:
            return await _mapped(*args, **kwargs)
        attrs = args[0].attrs
        attrs.changing += 1
        try:
            return await _mapped(*args, **kwargs)
        finally:
            attrs.changing -= 1
            attrs.changed()  # done: what a listing shows from now on is after it

    async def _mapped(*args: Any, **kwargs: Any) -> Any:
        if by_handle:
            pid = args[0].handles.opener(args[1])
        elif isinstance(args[-1], pyfuse3.RequestContext):  # pyfuse3 passes it last
            pid = args[-1].pid
        else:
            ctx = next((a for a in args if isinstance(a, pyfuse3.RequestContext)), None)
            pid = ctx.pid if ctx is not None else None
        try:
            with calling(pid):
                return await func(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except (SMBError, Unnamed) as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except ConnectionLost as exc:
            _repeats.warn(func.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except QuicfsError as exc:
            _repeats.warn(func.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.TooSlowError:
            raise pyfuse3.FUSEError(errno.ETIMEDOUT) from None
        except Exception:
            # A bug of ours must cost one call, never the mount (and every program
            # using it): EIO, and the traceback in the log.
            log.exception("%s failed", func.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def fuse_opt_escape(value: str) -> str:
    """``value`` as libfuse's option parser reads it back (lib/fuse_opt.c,
    process_real_option_group): a backslash takes the next character as it is and ``\\ooo``
    is one byte. A comma in a mount's source then cannot end its fsname= and add options
    (``d,allow_other``), and bytes beyond ASCII pass pyfuse3, which sends options as ASCII."""
    out = []
    for byte in os.fsencode(value):
        if byte in b",\\":
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def fuse_options(opts: Options, fsname: str) -> set[str]:
    """libfuse's mount options; the generic flags it cannot take are left to
    ``mountflags.remount`` once the mount is live."""
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    options.add(f"fsname={fuse_opt_escape(fsname)}")
    if opts.subtype:
        # Type "fuse.quicfs": mount(8) then hands a remount to /sbin/mount.fuse.quicfs
        # (ours) instead of fuse3's generic mount.fuse, which cannot parse //host/share.
        options.add("subtype=quicfs")
    options.add("default_permissions")
    if opts.allow_other:
        options.add("allow_other")
    options.add("ro" if opts.ro else "rw")
    options |= mountflags.split(opts.vfs)[0]
    return options
