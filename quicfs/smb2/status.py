"""NTSTATUS values quicfs meets (MS-ERREF 2.3.1), their names, and one map to errno.

The map is the single place where a server status becomes a POSIX error; the FUSE edge and
the CLI both read it.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class Status(IntEnum):
    SUCCESS = 0x00000000
    PENDING = 0x00000103
    NOTIFY_ENUM_DIR = 0x0000010C
    BUFFER_OVERFLOW = 0x80000005
    NO_MORE_FILES = 0x80000006
    STOPPED_ON_SYMLINK = 0x8000002D
    UNSUCCESSFUL = 0xC0000001
    NOT_IMPLEMENTED = 0xC0000002
    INVALID_INFO_CLASS = 0xC0000003
    INFO_LENGTH_MISMATCH = 0xC0000004
    INVALID_HANDLE = 0xC0000008
    INVALID_PARAMETER = 0xC000000D
    NO_SUCH_DEVICE = 0xC000000E
    NO_SUCH_FILE = 0xC000000F
    INVALID_DEVICE_REQUEST = 0xC0000010
    END_OF_FILE = 0xC0000011
    MORE_PROCESSING_REQUIRED = 0xC0000016
    NO_MEMORY = 0xC0000017
    ACCESS_DENIED = 0xC0000022
    BUFFER_TOO_SMALL = 0xC0000023
    OBJECT_TYPE_MISMATCH = 0xC0000024
    OBJECT_NAME_INVALID = 0xC0000033
    OBJECT_NAME_NOT_FOUND = 0xC0000034
    OBJECT_NAME_COLLISION = 0xC0000035
    OBJECT_PATH_INVALID = 0xC0000039
    OBJECT_PATH_NOT_FOUND = 0xC000003A
    OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    SHARING_VIOLATION = 0xC0000043
    EA_TOO_LARGE = 0xC0000050
    NONEXISTENT_EA_ENTRY = 0xC0000051
    NO_EAS_ON_FILE = 0xC0000052
    EA_CORRUPT_ERROR = 0xC0000053
    FILE_LOCK_CONFLICT = 0xC0000054
    LOCK_NOT_GRANTED = 0xC0000055
    DELETE_PENDING = 0xC0000056
    PRIVILEGE_NOT_HELD = 0xC0000061
    LOGON_FAILURE = 0xC000006D
    ACCOUNT_RESTRICTION = 0xC000006E
    INVALID_LOGON_HOURS = 0xC000006F
    PASSWORD_EXPIRED = 0xC0000071
    ACCOUNT_DISABLED = 0xC0000072
    RANGE_NOT_LOCKED = 0xC000007E
    DISK_FULL = 0xC000007F
    INSUFFICIENT_RESOURCES = 0xC000009A
    FILE_IS_A_DIRECTORY = 0xC00000BA
    NOT_SUPPORTED = 0xC00000BB
    NETWORK_NAME_DELETED = 0xC00000C9
    NETWORK_ACCESS_DENIED = 0xC00000CA
    BAD_NETWORK_NAME = 0xC00000CC
    REQUEST_NOT_ACCEPTED = 0xC00000D0
    NOT_SAME_DEVICE = 0xC00000D4
    FILE_RENAMED = 0xC00000D5
    NOT_A_DIRECTORY = 0xC0000103
    DIRECTORY_NOT_EMPTY = 0xC0000101
    FILE_CORRUPT_ERROR = 0xC0000102
    CANCELLED = 0xC0000120
    CANNOT_DELETE = 0xC0000121
    FILE_DELETED = 0xC0000123
    FILE_CLOSED = 0xC0000128
    TOO_MANY_LINKS = 0xC0000265
    INVALID_DEVICE_STATE = 0xC0000184
    IO_TIMEOUT = 0xC00000B5
    USER_SESSION_DELETED = 0xC0000203
    NOT_FOUND = 0xC0000225
    CONNECTION_DISCONNECTED = 0xC000020C
    CONNECTION_RESET = 0xC000020D
    NETWORK_SESSION_EXPIRED = 0xC000035C
    NOT_A_REPARSE_POINT = 0xC0000275
    STOPPED_ON_SYMLINK_ERR = 0xC0000280
    IO_REPARSE_TAG_NOT_HANDLED = 0xC0000279
    FILE_SYSTEM_LIMITATION = 0xC0000427
    ENCRYPTION_FAILED = 0xC000028A
    DECRYPTION_FAILED = 0xC000028B
    SMB_BAD_CLUSTER_DIALECT = 0xC05D0001
    INVALID_SIGNATURE = 0xC000A000
    QUOTA_EXCEEDED = 0xC0000044
    DUPLICATE_NAME = 0xC00000BD
    NAME_TOO_LONG = 0xC0000106
    MEDIA_WRITE_PROTECTED = 0xC00000A2
    USER_MAPPED_FILE = 0xC0000243
    WRONG_PASSWORD = 0xC000006A
    NO_SUCH_USER = 0xC0000064
    NETWORK_NAME_NOT_FOUND_ALIAS = 0xC00000BE  # STATUS_BAD_NETWORK_PATH


_ERRNO: dict[int, int] = {
    Status.NO_MORE_FILES: errno.ENOENT,
    Status.NOT_IMPLEMENTED: errno.ENOSYS,
    Status.INVALID_INFO_CLASS: errno.EOPNOTSUPP,
    Status.INFO_LENGTH_MISMATCH: errno.EINVAL,
    Status.INVALID_HANDLE: errno.EBADF,
    Status.INVALID_PARAMETER: errno.EINVAL,
    Status.NO_SUCH_DEVICE: errno.ENODEV,
    Status.NO_SUCH_FILE: errno.ENOENT,
    Status.INVALID_DEVICE_REQUEST: errno.EOPNOTSUPP,
    Status.END_OF_FILE: errno.ENODATA,
    Status.NO_MEMORY: errno.ENOMEM,
    Status.ACCESS_DENIED: errno.EACCES,
    Status.OBJECT_TYPE_MISMATCH: errno.EINVAL,
    Status.OBJECT_NAME_INVALID: errno.EINVAL,
    Status.OBJECT_NAME_NOT_FOUND: errno.ENOENT,
    Status.OBJECT_NAME_COLLISION: errno.EEXIST,
    Status.OBJECT_PATH_INVALID: errno.ENOTDIR,
    Status.OBJECT_PATH_NOT_FOUND: errno.ENOENT,
    Status.OBJECT_PATH_SYNTAX_BAD: errno.EINVAL,
    Status.SHARING_VIOLATION: errno.EBUSY,
    Status.EA_TOO_LARGE: errno.E2BIG,
    Status.NONEXISTENT_EA_ENTRY: errno.ENODATA,
    Status.NO_EAS_ON_FILE: errno.ENODATA,
    Status.EA_CORRUPT_ERROR: errno.EIO,
    Status.FILE_LOCK_CONFLICT: errno.EACCES,
    Status.LOCK_NOT_GRANTED: errno.EAGAIN,
    Status.DELETE_PENDING: errno.ENOENT,
    Status.PRIVILEGE_NOT_HELD: errno.EPERM,
    Status.LOGON_FAILURE: errno.EACCES,
    Status.WRONG_PASSWORD: errno.EACCES,
    Status.NO_SUCH_USER: errno.EACCES,
    Status.ACCOUNT_RESTRICTION: errno.EACCES,
    Status.INVALID_LOGON_HOURS: errno.EACCES,
    Status.PASSWORD_EXPIRED: errno.EKEYEXPIRED,
    Status.ACCOUNT_DISABLED: errno.EKEYREVOKED,
    Status.RANGE_NOT_LOCKED: errno.ENOLCK,
    Status.DISK_FULL: errno.ENOSPC,
    Status.INSUFFICIENT_RESOURCES: errno.EAGAIN,
    Status.FILE_IS_A_DIRECTORY: errno.EISDIR,
    Status.NOT_SUPPORTED: errno.EOPNOTSUPP,
    Status.NETWORK_NAME_DELETED: errno.EREMCHG,
    Status.NETWORK_ACCESS_DENIED: errno.EACCES,
    Status.BAD_NETWORK_NAME: errno.ENOENT,
    Status.NETWORK_NAME_NOT_FOUND_ALIAS: errno.ENOENT,
    Status.NOT_SAME_DEVICE: errno.EXDEV,
    Status.NOT_A_DIRECTORY: errno.ENOTDIR,
    Status.DIRECTORY_NOT_EMPTY: errno.ENOTEMPTY,
    Status.FILE_CORRUPT_ERROR: errno.EIO,
    Status.CANCELLED: errno.ECANCELED,
    Status.CANNOT_DELETE: errno.EACCES,
    Status.FILE_DELETED: errno.ENOENT,
    Status.FILE_CLOSED: errno.EBADF,
    Status.TOO_MANY_LINKS: errno.EMLINK,
    Status.IO_TIMEOUT: errno.ETIMEDOUT,
    Status.USER_SESSION_DELETED: errno.EIO,
    Status.NOT_FOUND: errno.ENOENT,
    Status.CONNECTION_DISCONNECTED: errno.ECONNABORTED,
    Status.CONNECTION_RESET: errno.ECONNRESET,
    Status.NETWORK_SESSION_EXPIRED: errno.EIO,
    Status.NOT_A_REPARSE_POINT: errno.EINVAL,
    Status.STOPPED_ON_SYMLINK_ERR: errno.ELOOP,
    # A link the server would not follow for us: what O_NOFOLLOW meets on one.
    Status.STOPPED_ON_SYMLINK: errno.ELOOP,
    Status.QUOTA_EXCEEDED: errno.EDQUOT,
    Status.DUPLICATE_NAME: errno.EEXIST,
    Status.NAME_TOO_LONG: errno.ENAMETOOLONG,
    Status.MEDIA_WRITE_PROTECTED: errno.EROFS,
    Status.USER_MAPPED_FILE: errno.EBUSY,
    Status.FILE_SYSTEM_LIMITATION: errno.EFBIG,
    Status.INVALID_SIGNATURE: errno.EIO,
    Status.DECRYPTION_FAILED: errno.EIO,
}

# Human wording for the statuses users meet; the CLI prints these.
_MESSAGES: dict[int, str] = {
    Status.LOGON_FAILURE: "logon failure",
    Status.OBJECT_NAME_NOT_FOUND: "no such file or directory",
    Status.OBJECT_PATH_NOT_FOUND: "no such file or directory",
    Status.NO_SUCH_FILE: "no such file or directory",
    Status.BAD_NETWORK_NAME: "no such share",
    Status.ACCESS_DENIED: "access denied",
    Status.OBJECT_NAME_COLLISION: "file exists",
    Status.FILE_IS_A_DIRECTORY: "is a directory",
    Status.NOT_A_DIRECTORY: "not a directory",
    Status.DIRECTORY_NOT_EMPTY: "directory not empty",
    Status.SHARING_VIOLATION: "file is in use (sharing violation)",
    Status.DISK_FULL: "no space left on the share",
    Status.DELETE_PENDING: "file is being deleted",
}


def status_name(status: int) -> str:
    try:
        return "STATUS_" + Status(status).name
    except ValueError:
        return f"NTSTATUS 0x{status:08X}"


def status_message(status: int) -> str:
    """A short human description, falling back to the status name."""
    return _MESSAGES.get(status, status_name(status))


def errno_for_status(status: int) -> int:
    return _ERRNO.get(status, errno.EIO)


def is_error(status: int) -> bool:
    """Severity bits 0b11 are errors (MS-ERREF 2.3); warnings (0b10) carry data, but for
    STATUS_STOPPED_ON_SYMLINK, a failed CREATE whose body is an ERROR response (MS-SMB2
    2.2.2, 2.2.2.2.1): never one to decode as the request's answer."""
    return (status >> 30) == 0b11 or status == Status.STOPPED_ON_SYMLINK
