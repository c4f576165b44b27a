"""A small pyfuse3 passthrough file system: the reference quicfs's xfstests figures are
compared with (``xfstests/run --reference``).

It mounts a local directory through FUSE with the same pyfuse3 and the same kernel as
quicfs, so a test it passes and quicfs does not is either something SMB cannot carry or
something to fix in quicfs; a test it fails too is a limit of FUSE or pyfuse3 here.
It is kept plain on purpose: every call goes to the directory below, by path, as the
caller (fsuid, fsgid and groups) when it makes something new.

    passthrough.py passthrough:/DIR MOUNTPOINT [-o OPTIONS]   (a mount(8) helper:
                                                             returns once mounted)
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import functools
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyfuse3
import trio

from quicfs.fs import mountflags
from quicfs.fs.caller import groups_of
from quicfs.fs.edge import fuse_options
from quicfs.options import parse_options, split_options

#: A source is ``passthrough:/DIR``: not a path, as umount(8) would take a path for a
#: mount point.
SCHEME = "passthrough:"
_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
RENAME_WHITEOUT = 1 << 2  # linux/fs.h


def _fuse_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
    return wrapper


class Passthrough(pyfuse3.Operations):
    """Inode numbers are the directory's own; each inode knows its names (paths)."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = os.fsencode(os.path.realpath(root))
        self.root_ino = os.lstat(self.root).st_ino
        self.names: dict[int, set[bytes]] = {pyfuse3.ROOT_INODE: {self.root}}
        self.open_fds: dict[int, set[int]] = {}
        self.fh_inode: dict[int, int] = {}
        self.dirs: dict[int, list[bytes]] = {}
        self._next_dir = 1
        self._groups = os.getgroups()
        # POSIX ACLs: the kernel checks them; the file system below keeps them (and the
        # mode they imply) as it does for local callers.
        self.enable_acl = True

    # ------------------------------------------------------------------ bookkeeping
    def _ino(self, st: os.stat_result) -> int:
        return pyfuse3.ROOT_INODE if st.st_ino == self.root_ino else st.st_ino

    def _path(self, inode: int) -> bytes:
        names = self.names.get(inode)
        if not names:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return next(iter(names))

    def _child(self, parent: int, name: bytes) -> bytes:
        return os.path.join(self._path(parent), name)

    def _entry(self, path: bytes, st: os.stat_result | None = None) -> pyfuse3.EntryAttributes:
        st = st or os.lstat(path)
        ino = self._ino(st)
        self.names.setdefault(ino, set()).add(path)
        return self._attrs(st, ino)

    @staticmethod
    def _attrs(st: os.stat_result, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        for field in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                      "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(a, field, getattr(st, field))
        return a

    def _forget_name(self, path: bytes) -> None:
        for names in self.names.values():
            names.discard(path)

    def _renamed(self, old: bytes, new: bytes) -> None:
        """Every name at or below ``old`` is now at or below ``new``."""
        prefix = old + b"/"
        for names in self.names.values():
            for name in [n for n in names if n == old or n.startswith(prefix)]:
                names.discard(name)
                names.add(new + name[len(old):])

    @contextmanager
    def _as(self, ctx: pyfuse3.RequestContext) -> Iterator[None]:
        """New files get the caller's owner and group (and a set-group-ID directory's
        group) from the file system below, as a local process would."""
        os.setgroups(sorted(groups_of(ctx.pid)))
        _libc.setfsgid(ctx.gid)
        _libc.setfsuid(ctx.uid)
        try:
            yield
        finally:
            _libc.setfsuid(0)
            _libc.setfsgid(0)
            os.setgroups(self._groups)

    # ------------------------------------------------------------------ names
    @_fuse_errors
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(self._child(parent_inode, name))

    @_fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext
                      ) -> pyfuse3.EntryAttributes:
        return self._attrs(self._stat(self._target(inode, None)), inode)

    def _target(self, inode: int, fh: int | None) -> int | bytes:
        """The file of ``inode``: the handle given, a name, or (once every name is
        gone) a handle still open on it."""
        if fh is not None:
            return fh
        if self.names.get(inode):
            return self._path(inode)
        if self.open_fds.get(inode):
            return next(iter(self.open_fds[inode]))
        raise pyfuse3.FUSEError(errno.ENOENT)

    @staticmethod
    def _stat(target: int | bytes) -> os.stat_result:
        return os.lstat(target) if isinstance(target, bytes) else os.fstat(target)

    @_fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        target = self._target(inode, fh)
        is_link = isinstance(target, bytes) and stat.S_ISLNK(os.lstat(target).st_mode)
        if fields.update_size:
            os.truncate(target, attr.st_size)
        if fields.update_mode and not is_link:
            os.chmod(target, stat.S_IMODE(attr.st_mode))
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            if isinstance(target, int):
                os.fchown(target, uid, gid)
            else:
                os.lchown(target, uid, gid)
        if fields.update_atime or fields.update_mtime:
            st = self._stat(target)
            times = (attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                     attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns)
            if isinstance(target, int):
                os.utime(target, ns=times)
            else:
                os.utime(target, ns=times, follow_symlinks=False)
        return self._attrs(self._stat(target), inode)

    @_fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.readlink(self._path(inode))

    def _make(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext,
              make: Callable[[bytes], None]) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        with self._as(ctx):
            make(path)
        return self._entry(path)

    @_fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._make(parent_inode, name, ctx, lambda path: os.mknod(path, mode, rdev))

    @_fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._make(parent_inode, name, ctx, lambda path: os.mkdir(path, mode))

    @_fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._make(parent_inode, name, ctx, lambda path: os.symlink(target, path))

    @_fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._child(new_parent_inode, new_name)
        os.link(self._path(inode), path, follow_symlinks=False)
        return self._entry(path)

    def _remove(self, parent_inode: int, name: bytes,
                      remove: Callable[[bytes], None]) -> None:
        path = self._child(parent_inode, name)
        remove(path)
        self._forget_name(path)

    @_fuse_errors
    async def unlink(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> None:
        self._remove(parent_inode, name, os.unlink)

    @_fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes,
                    ctx: pyfuse3.RequestContext) -> None:
        self._remove(parent_inode, name, os.rmdir)

    @_fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        if flags:
            if _libc.renameat2(_AT_FDCWD, old, _AT_FDCWD, new, flags) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        else:
            os.rename(old, new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            swap = old + b"\0swap"
            self._renamed(new, swap)
            self._renamed(old, new)
            self._renamed(swap, old)
        else:
            self._forget_name(new)
            self._renamed(old, new)
            if flags & RENAME_WHITEOUT:  # a 0:0 device is left behind at the old name
                self._entry(old)

    # ------------------------------------------------------------------ files
    def _opened(self, inode: int, fd: int) -> pyfuse3.FileInfo:
        self.open_fds.setdefault(inode, set()).add(fd)
        self.fh_inode[fd] = inode
        return pyfuse3.FileInfo(fh=fd)

    @staticmethod
    def _flags(flags: int) -> int:
        # The kernel gives each write its offset (O_APPEND included) and has already
        # created as asked; O_TRUNC is ours to do (libfuse asks for atomic_o_trunc).
        # O_DIRECT is about the mount's page cache, which the kernel bypasses for it;
        # below, it would only ask for aligned buffers we cannot promise.
        return flags & ~(os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_DIRECT)

    @_fuse_errors
    async def open(self, inode: int, flags: int,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fd = os.open(self._path(inode), self._flags(flags))
        return self._opened(inode, fd)

    @_fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._child(parent_inode, name)
        with self._as(ctx):
            fd = os.open(path, self._flags(flags) | os.O_CREAT | os.O_EXCL, mode)
        attrs = self._entry(path, os.fstat(fd))
        return self._opened(attrs.st_ino, fd), attrs

    @_fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    @_fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    @_fuse_errors
    async def flush(self, fh: int) -> None:
        pass

    @_fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    @_fuse_errors
    async def release(self, fh: int) -> None:
        inode = self.fh_inode.pop(fh, None)
        if inode is not None:
            self.open_fds.get(inode, set()).discard(fh)
        os.close(fh)

    # ------------------------------------------------------------------ directories
    @_fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self._path(inode)
        fh = self._next_dir
        self._next_dir += 1
        self.dirs[fh] = [path, *sorted(os.fsencode(n) for n in os.listdir(path))]
        return fh

    @_fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        path, *entries = self.dirs[fh]
        for i in range(start_id, len(entries)):
            child = os.path.join(path, entries[i])
            try:
                attrs = self._entry(child)
            except FileNotFoundError:
                continue
            if not pyfuse3.readdir_reply(token, entries[i], attrs, i + 1):
                break

    @_fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    @_fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        fd = os.open(self.dirs[fh][0], os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @_fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        sv = os.statvfs(self.root)
        out = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                      "f_ffree", "f_favail", "f_namemax"):
            setattr(out, field, getattr(sv, field))
        return out

    # ------------------------------------------------------------------ xattrs
    @_fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return os.getxattr(self._target(inode, None), name, follow_symlinks=False)

    @_fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [os.fsencode(n) for n in
                os.listxattr(self._target(inode, None), follow_symlinks=False)]

    @_fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        os.setxattr(self._target(inode, None), name, value, follow_symlinks=False)

    @_fuse_errors
    async def removexattr(self, inode: int, name: bytes,
                          ctx: pyfuse3.RequestContext) -> None:
        os.removexattr(self._target(inode, None), name, follow_symlinks=False)


# ---------------------------------------------------------------------- the helper
async def _serve(source: str, mountpoint: str, options: str, ready_fd: int) -> None:
    # Mounted with the options quicfs's helper would give libfuse for the same -o
    # (nosubtype: the type must show as plain "fuse"), and the same flags set by a
    # remount afterwards.
    opts = parse_options(f"{options},nosubtype")
    later = mountflags.split(opts.vfs)[1]
    pyfuse3.init(Passthrough(source[len(SCHEME):]), mountpoint, fuse_options(opts, source))
    try:
        async with trio.open_nursery() as nursery:
            async def settle() -> None:
                if later:
                    await trio.to_thread.run_sync(mountflags.remount, mountpoint, later)
                os.write(ready_fd, b"ready\n")
                os.close(ready_fd)

            nursery.start_soon(settle)
            await pyfuse3.main()
    finally:
        pyfuse3.close(unmount=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mount.fuse.passthrough")
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("-o", dest="options", default="")
    p.add_argument("-n", action="store_true")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    mountpoint = os.path.realpath(args.mountpoint)
    if "remount" in split_options(args.options):
        from quicfs.cli.mount import remount

        return remount(mountpoint, args.options)
    if args.serve is not None:
        os.umask(0)
        trio.run(_serve, args.source, mountpoint, args.options, args.serve)
        return 0
    if not args.source.startswith(SCHEME) or not os.path.isdir(args.source[len(SCHEME):]):
        print(f"mount.fuse.passthrough: {args.source} is not {SCHEME}DIRECTORY",
              file=sys.stderr)
        return 32
    ready_r, ready_w = os.pipe()
    subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(ready_w),
                      "-o", args.options, args.source, mountpoint],
                     pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    os.close(ready_w)
    with os.fdopen(ready_r) as f:
        if f.readline().strip() == "ready":
            return 0
    print(f"mount.fuse.passthrough: cannot mount {args.source} on {mountpoint}",
          file=sys.stderr)
    return 32


if __name__ == "__main__":
    sys.exit(main())
