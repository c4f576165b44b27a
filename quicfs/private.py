"""Reading a file that holds a secret (a password, a TLS resumption secret) only when it is
private to its owner.

The checks are made on what is opened, not on the name: the name is looked at with lstat
first (opening a device or FIFO to find out what it is may act on it), opened without
following a symbolic link (another user may have planted one where the file goes), and the
descriptor is checked again before it is read (the name may have changed in between).
"""

from __future__ import annotations

import errno
import os
import stat


class PrivateFileError(Exception):
    """Why a file was not read: ``detail`` follows the file's name in a sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PrivateFileMissing(PrivateFileError):
    pass


def _check(path: str, st: os.stat_result | None, owners: frozenset[int]) -> None:
    if st is None or stat.S_ISLNK(st.st_mode):
        raise PrivateFileError(" is a symbolic link; name the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise PrivateFileError(" is not a regular file")
    if st.st_uid not in owners:
        me = os.geteuid()
        raise PrivateFileError(f" belongs to uid {st.st_uid}, not to you (uid {me})"
                               + (" or root" if 0 in owners else ""))
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise PrivateFileError(f" is readable by group or others (mode {mode:04o}); "
                               f"run chmod 600 {path}")


def read_private(path: str | os.PathLike[str], *, max_size: int,
                 root_may_own: bool = False) -> bytes:
    """The bytes of ``path`` if it is a regular file of this user's (or root's, when
    ``root_may_own``), readable by nobody else, and at most ``max_size`` bytes; else a
    PrivateFileError (PrivateFileMissing when there is no such file)."""
    name = os.fspath(path)
    owners = frozenset({os.geteuid(), 0} if root_may_own else {os.geteuid()})
    try:
        _check(name, os.lstat(name), owners)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PrivateFileMissing(": no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # made a symbolic link since the lstat
            _check(name, None, owners)
        raise PrivateFileError(f": {exc.strerror}") from None
    try:
        _check(name, os.fstat(fd), owners)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_size + 1)
    except OSError as exc:
        raise PrivateFileError(f": {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_size:
        raise PrivateFileError(f" is larger than {max_size} bytes")
    return data
