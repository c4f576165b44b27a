"""``mount.quicfs SOURCE MOUNTPOINT [-o OPTIONS] [-f]``: mount a share, as mount(8) calls it.

Without ``-f`` the command returns only once the mount is live: it starts the serving
process (detached: own session, stdio on /dev/null) and waits on a pipe for "ready" or
the one-line reason it failed. The options, password included, reach the serving process
through another pipe, never its command line, so ``ps`` does not show the password.

Exit codes follow mount(8): 0 success, 1 bad invocation, 32 mount failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NoReturn

PROG = "mount.quicfs"
EX_USAGE = 1
EX_FAIL = 32
#: How often the serving process looks whether its mount is still there.
MOUNT_CHECK_SECONDS = 2.0
#: FUSE worker tasks kept waiting for requests (pyfuse3.main's min_tasks).
FUSE_WORKERS = 8
#: How long requests in flight may still be answered once the mount is stopping.
STOP_GRACE_SECONDS = 5.0
#: How long an unmount waits for what close(2)s left behind (closeflush=behind).
SETTLE_SECONDS = 30.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # mount(8) keeps 2 for its own errors: a helper's bad invocation is 1 (EX_USAGE).
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="mount an SMB share over QUIC or TCP")
    p.add_argument("source", metavar="//HOST[:PORT]/SHARE[/PATH]")
    p.add_argument("mountpoint")
    p.add_argument("-o", dest="options", default="", metavar="OPTIONS")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in front")
    p.add_argument("-n", dest="no_mtab", action="store_true", help="(ignored, as mount(8))")
    p.add_argument("-s", dest="sloppy", action="store_true", help="(ignored)")
    p.add_argument("-v", dest="verbose", action="store_true")
    p.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    return p


def is_mounted(mountpoint: str) -> bool:
    from quicfs.fs.kernel import mount_entry

    return mount_entry(mountpoint) is not None


def check_mountpoint(mountpoint: str) -> str | None:
    if not os.path.exists(mountpoint):
        return f"mount point {mountpoint} does not exist"
    if not os.path.isdir(mountpoint):
        return f"mount point {mountpoint} is not a directory"
    if is_mounted(mountpoint):
        return f"{mountpoint} is already mounted"
    return None


async def serve(source: str, options: str, mountpoint: str,
                ready: Callable[[str | None], None],
                connecting: Callable[[], object] = lambda: None) -> None:
    """Connect, mount, signal ``ready(None)``, serve until unmounted or SIGTERM.
    ``connecting()`` is called as the connection starts (run_server's _import_ahead)."""
    import trio

    from quicfs import control, control_server
    from quicfs.client.share import connect
    from quicfs.errors import SMBError
    from quicfs.options import parse_options
    from quicfs.smb2.status import Status

    opts = parse_options(options)
    control_path = control.socket_path(mountpoint)
    events = control.EventLog()
    logging.getLogger("quicfs").addHandler(events)
    connecting()
    async with connect(source, opts) as share:
        # Imported once connected: loaded meanwhile (``connecting``, _import_ahead).
        import pyfuse3

        from quicfs.fs import mountflags
        from quicfs.fs.edge import fuse_options
        from quicfs.fs.kernel import fuse_connected, raise_read_ahead
        from quicfs.fs.operations import Operations

        if share.url.path:
            # A directory of the share (//host/share/PATH) is mounted: it must be one.
            if not (await share.stat(share.url.path)).is_dir:
                raise SMBError(Status.NOT_A_DIRECTORY)

        def settle() -> None:
            raise_read_ahead(mountpoint)
            later = mountflags.split(opts.vfs)[1]
            if later:
                mountflags.remount(mountpoint, later)

        async def settle_then_ready() -> None:
            # In a thread: a remount may stat the mount point, which waits for the
            # kernel's INIT, which only pyfuse3.main() answers. Ready once it is done.
            await trio.to_thread.run_sync(settle)
            ready(None)

        initialised = False
        try:
            async with trio.open_nursery() as nursery:
                # Background writes, read-ahead and parked handles live as long as the
                # mount: its nursery is the operations' from the start.
                ops = Operations(share, opts, nursery)
                try:
                    pyfuse3.init(ops, mountpoint, fuse_options(opts, source))
                except RuntimeError as exc:
                    raise OSError(f"cannot mount on {mountpoint}: {exc}") from None
                initialised = True

                async def answer(request: str) -> dict[str, object]:
                    if request == "stats":
                        out: dict[str, object] = {"mountpoint": mountpoint}
                        if share.uplink is not None:
                            out.update(share.uplink.snapshot())
                        out.update(ops.stats())
                        out["events"] = list(events.lines)
                        return out
                    if request == "migrate":
                        migrate = getattr(share.conn.transport, "migrate", None)
                        if migrate is None:
                            return {"error": "only a QUIC connection migrates"}
                        await migrate("asked through the control socket")
                        return {"migrated": True}
                    return {"error": f"unknown request {request!r}"}

                def stop() -> None:
                    # Calls a hard mount holds waiting for its server fail (those sent
                    # after a grace): they would keep the process, and its reconnects,
                    # alive for ever.
                    if share.uplink is not None:
                        share.uplink.closing()
                        nursery.start_soon(share.uplink.abandon_after, STOP_GRACE_SECONDS)
                    pyfuse3.terminate()

                async def settled() -> None:
                    # closeflush=behind: what close(2)s left behind is sent before the
                    # connection is let go (for SETTLE_SECONDS at most; then logged).
                    with trio.move_on_after(SETTLE_SECONDS):
                        await ops.settle()

                async def on_signal() -> None:
                    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                        async for _ in sigs:
                            await settled()
                            stop()
                            return

                async def while_mounted() -> None:
                    # umount (or umount -l) ends the kernel's side; handlers still
                    # waiting for a lost server must not outlive it.
                    while True:
                        await trio.sleep(MOUNT_CHECK_SECONDS)
                        # umount -l of a busy mount: served until its last file closes
                        # (fs/kernel.py), unless its server is lost meanwhile.
                        if not fuse_connected() or (share.conn.closed
                                                    and not is_mounted(mountpoint)):
                            break
                    logging.getLogger("quicfs").info("%s is no longer mounted; stopping",
                                                     mountpoint)
                    await settled()
                    stop()

                nursery.start_soon(on_signal)
                await nursery.start(control_server.serve, control_path, answer)
                nursery.start_soon(settle_then_ready)
                nursery.start_soon(while_mounted)
                # Idle workers stay: with pyfuse3's default of one, a worker is started
                # and another ended for nearly every request that arrives while one is
                # being served (a release beside the next open, a getxattr beside a write).
                try:
                    await pyfuse3.main(min_tasks=FUSE_WORKERS)
                finally:
                    await settled()
                nursery.cancel_scope.cancel()
        finally:
            if initialised:
                pyfuse3.close(unmount=True)


def remount(mountpoint: str, options: str) -> int:
    """``mount -o remount,ro|rw,relatime,...``: the kernel changes the superblock's
    read-only flag and the mount's flags; the serving process needs no word of it (the
    VFS refuses writes on a read-only mount). mount(8) passes the live mount's kernel
    options (user_id=, ...) and, from xfstests, every option of the first mount along:
    only the flags matter here."""
    from quicfs.fs import mountflags
    from quicfs.options import VFS_FLAGS, split_options

    if not is_mounted(mountpoint):
        print(f"{PROG}: {mountpoint} is not mounted", file=sys.stderr)
        return EX_FAIL
    given = [o for o in split_options(options) if o in VFS_FLAGS or o in ("ro", "rw")]
    modes = [o for o in given if o in ("ro", "rw")]
    flags = mountflags.resolve([o for o in given if o not in modes], defaults=False)
    try:
        mountflags.remount(mountpoint, modes[-1:] + flags)
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EX_FAIL
    return 0


def _describe(exc: BaseException, source: str, options: str) -> str:
    from quicfs.cli.errors import describe

    ns = argparse.Namespace(url=source, options=options)
    return describe(exc, ns)[0]


def run_server(cfg_fd: int, ready_fd: int) -> int:
    """The detached serving process: config from one pipe, readiness to the other."""
    import trio

    with os.fdopen(cfg_fd, "rb") as f:
        cfg = json.loads(f.read())
    ready_file = os.fdopen(ready_fd, "w")

    def ready(error: str | None) -> None:
        ready_file.write("ready\n" if error is None else f"error {error}\n")
        ready_file.flush()
        ready_file.close()

    logging.basicConfig(level=logging.DEBUG if cfg.get("debug") else logging.WARNING,
                        format=f"{PROG}: %(message)s")
    # Detached, stderr goes nowhere: reconnects and migrations go to the system log, as
    # cifs.ko's go to the kernel's, and to a small file beside the control socket.
    from logging.handlers import RotatingFileHandler, SysLogHandler

    from quicfs.control import log_path
    from quicfs.errors import QuicfsError

    handlers: list[logging.Handler] = []
    if os.path.exists("/dev/log"):
        handlers.append(SysLogHandler(address="/dev/log"))
    try:
        handlers.append(RotatingFileHandler(log_path(cfg["mountpoint"]),
                                            maxBytes=1 << 20, backupCount=1))
    except QuicfsError as exc:  # the directory is not ours alone (control.private_dir)
        ready(str(exc))
        return EX_FAIL
    except OSError:
        pass
    for handler in handlers:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s {PROG}[%(process)d]: %(message)s"))
        logging.getLogger().addHandler(handler)
    try:
        with ThreadPoolExecutor(max_workers=1) as early:
            trio.run(serve, cfg["source"], cfg["options"], cfg["mountpoint"], ready,
                     partial(early.submit, _import_ahead))
    except BaseException as exc:
        if not ready_file.closed:
            ready(_describe(exc, cfg["source"], cfg["options"]))
        else:
            logging.getLogger("quicfs").exception("the mount stopped on an error")
        return EX_FAIL
    return 0


def _import_ahead() -> None:
    """What the mount needs only once connected (FUSE, the filesystem, SPNEGO: ~0.25 s
    of imports here), loaded in a thread while the connection's first round trips are
    under way. Started only then: beside the serving thread's own imports it would
    slow both (one GIL). Python's import locks make a module the serving thread reaches
    first wait for this thread's load of it, never load twice."""
    import pyfuse3  # noqa: F401

    import quicfs.fs.operations  # noqa: F401
    from quicfs.client import auth

    auth.preload()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # this process's own command line (the serving process's has none)
        from quicfs.cli import secret

        secret.protect(PROG)
    args = _parser().parse_args(argv)
    if args.serve:
        return run_server(*args.serve)
    from quicfs.errors import QuicfsError
    from quicfs.options import parse_options
    from quicfs.url import parse_url

    if "remount" in args.options.split(","):
        return remount(args.mountpoint, args.options)
    try:
        parse_url(args.source)
        opts = parse_options(args.options)
        opts.resolved_credentials()
        if opts.cert or opts.key or opts.cafile:
            # Only then: its x509 import costs ~0.1 s of every mount's start.
            from quicfs.cert import check_files

            check_files(cert=opts.cert, key=opts.key, cafile=opts.cafile)
    except QuicfsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EX_USAGE
    name = os.fsencode(args.mountpoint)
    if not name.isascii() and name.decode("utf-8", "replace") != args.mountpoint:
        # Every program that reads /proc/self/mountinfo as text would fail on it.
        shown = name.decode("ascii", "backslashreplace")
        print(f"{PROG}: mount point {shown}: its name is not UTF-8", file=sys.stderr)
        return EX_USAGE
    problem = check_mountpoint(args.mountpoint)
    if problem is None:
        from quicfs import control

        try:
            control.private_dir()  # the mount's control socket and log go there
        except QuicfsError as exc:
            problem = str(exc)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return EX_FAIL
    mountpoint = os.path.realpath(args.mountpoint)
    if args.foreground:
        import trio

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format=f"{PROG}: %(message)s")
        try:
            trio.run(serve, args.source, args.options, mountpoint,
                     lambda error: None)
        except BaseException as exc:
            print(f"{PROG}: {_describe(exc, args.source, args.options)}", file=sys.stderr)
            return EX_FAIL
        return 0
    cfg_r, cfg_w = os.pipe()
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quicfs.cli.mount", "--serve", str(cfg_r), str(ready_w),
         args.source, mountpoint],
        pass_fds=(cfg_r, ready_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
    )
    os.close(cfg_r)
    os.close(ready_w)
    with os.fdopen(cfg_w, "w") as f:
        json.dump({"source": args.source, "options": args.options, "mountpoint": mountpoint,
                   "debug": opts.debug}, f)
    with os.fdopen(ready_r) as f:
        line = f.readline().strip()
    if line == "ready":
        return 0
    proc.wait(timeout=30)
    message = line[len("error "):] if line.startswith("error ") else "mount failed"
    print(f"{PROG}: {message}", file=sys.stderr)
    return EX_FAIL


if __name__ == "__main__":
    sys.exit(main())
