"""SMB file information to POSIX attributes. Pure: no pyfuse3 here, the operations fill
EntryAttributes from :class:`PosixAttrs`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from quicfs.client.open import FileStat
from quicfs.options import Options
from quicfs.smb2.constants import FileAttributes

# mount.cifs's defaults: 0755 for both, so programs kept on a share can be run.
DEFAULT_FILE_MODE = 0o755
DEFAULT_DIR_MODE = 0o755


@dataclass(frozen=True, slots=True)
class PosixAttrs:
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


def posix_attrs(st: FileStat, opts: Options) -> PosixAttrs:
    """A directory gets ``dir_mode``, a file ``file_mode`` (cifs.ko's defaults: the
    server's ACLs decide access, the modes are what `ls` shows). The read-only attribute
    takes the write bits away."""
    if st.is_dir:
        mode = stat.S_IFDIR | (opts.dir_mode if opts.dir_mode is not None else DEFAULT_DIR_MODE)
    else:
        mode = stat.S_IFREG | (opts.file_mode if opts.file_mode is not None
                               else DEFAULT_FILE_MODE)
        if st.attributes & FileAttributes.READONLY:
            mode &= ~0o222
    return PosixAttrs(
        mode=mode,
        # 0 links: deleted while open (the server says so once the delete is pending).
        nlink=st.nlink if not st.is_dir else 2,
        uid=opts.uid if opts.uid is not None else os.getuid(),
        gid=opts.gid if opts.gid is not None else os.getgid(),
        size=st.size,
        blocks=(st.allocation_size + 511) // 512,
        atime_ns=st.atime_ns,
        mtime_ns=st.mtime_ns,
        ctime_ns=st.ctime_ns,
    )
