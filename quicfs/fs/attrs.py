"""SMB file information to POSIX attributes. Pure: no pyfuse3 here, the operations fill
EntryAttributes from :class:`PosixAttrs`."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from quicfs.client.open import FileStat
from quicfs.fs import mountflags
from quicfs.options import Options
from quicfs.smb2.constants import FileAttributes
from quicfs.smb2.lxmeta import DEVICE_TYPES, LxMeta

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
    rdev: int = 0


def posix_attrs(st: FileStat, opts: Options, lx: LxMeta | None = None) -> PosixAttrs:
    """A directory gets ``dir_mode``, a file ``file_mode`` (cifs.ko's defaults: the
    server's ACLs decide access, the modes are what `ls` shows), unless its EAs keep a
    Linux mode, owner or group (``lx``, mount option metadata); an empty file's $LXMOD
    may make it a FIFO, socket or device node. The read-only attribute takes the write bits away.

    Anyone who may write to the share sets those EAs: a file's setuid and setgid bits
    are shown only on a mount told ``suid``, device nodes only on one told ``dev``
    (fs/mountflags.py); elsewhere they are plain files (the kernel's nosuid and nodev
    would stop them too, but not a ``cp -a`` that copies them elsewhere)."""
    kind = stat.S_IFDIR if st.is_dir else stat.S_IFREG
    if lx is not None and lx.mode is not None:
        suid, dev = mountflags.trusts(opts.vfs)
        special = lx.special_type
        if not st.is_dir and st.size == 0 and special is not None \
                and (dev or special not in DEVICE_TYPES):
            kind = special  # (one with data is a file, whatever $LXMOD says)
        perm = lx.mode & 0o7777
        if not suid and not st.is_dir:  # (a directory's setgid bit hands down its group)
            perm &= ~(stat.S_ISUID | stat.S_ISGID)
    elif st.is_dir:
        perm = opts.dir_mode if opts.dir_mode is not None else DEFAULT_DIR_MODE
    else:
        perm = opts.file_mode if opts.file_mode is not None else DEFAULT_FILE_MODE
    if not st.is_dir and st.attributes & FileAttributes.READONLY:
        perm &= ~0o222
    uid = opts.uid if opts.uid is not None else os.getuid()
    gid = opts.gid if opts.gid is not None else os.getgid()
    if lx is not None:
        uid = lx.uid if lx.uid is not None else uid
        gid = lx.gid if lx.gid is not None else gid
    special = kind not in (stat.S_IFDIR, stat.S_IFREG)
    return PosixAttrs(
        mode=kind | perm,
        # 0 links: deleted while open (the server says so once the delete is pending).
        nlink=st.nlink if not st.is_dir else 2,
        uid=uid,
        gid=gid,
        rdev=(lx.rdev or 0) if special and lx is not None else 0,
        size=st.size,
        blocks=(st.allocation_size + 511) // 512,
        atime_ns=st.atime_ns,
        mtime_ns=st.mtime_ns,
        ctime_ns=st.ctime_ns,
    )
