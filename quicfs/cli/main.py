"""The ``quicfs`` command: one-shot ls / get / put against a share, and the tools
around mounts (gateway, probe, stats, cert, demo).

Thin by design: parse, call the library, print one clear line on error (never a traceback).
Exit codes: 0 success, 1 failure, 2 bad usage, 130 interrupted; probe adds 3 (TCP ready,
QUIC not) and 4 (QUIC ready, TCP not).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import stat
import sys
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

# Light imports only: a password on the command line stays visible to other users until
# main() takes it out, so the slow ones (trio, the client: ~1 s) come after (cli/secret.py).
from quicfs.cli import secret
from quicfs.errors import QuicfsError, SMBError, UsageError
from quicfs.options import Options, parse_options
from quicfs.url import ShareURL, parse_url

if TYPE_CHECKING:
    from quicfs.client.share import Share

PROG = "quicfs"


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return int(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="SMB 3.1.1 over QUIC (and TCP)")
    p.add_argument("--debug", action="store_true", help="log protocol details to stderr")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say which transport was chosen and how the connection went")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("-o", dest="options", default="", metavar="OPTIONS",
                        help="comma-separated options, as mount.quicfs takes them")
        return sp

    ls = add("ls", "list a directory (or show one file)")
    ls.add_argument("url", metavar="URL", help="//HOST[:PORT]/SHARE[/PATH]")
    get = add("get", "copy a file from the share (LOCAL '-' is stdout)")
    get.add_argument("url", metavar="URL")
    get.add_argument("local", metavar="LOCAL")
    put = add("put", "copy a file to the share (LOCAL '-' is stdin)")
    put.add_argument("local", metavar="LOCAL")
    put.add_argument("url", metavar="URL")
    gw = sub.add_parser("gateway", help="serve SMB over QUIC in front of a TCP SMB server")
    gw.add_argument("--listen", default="0.0.0.0:443", metavar="ADDR:PORT",
                    help="UDP address to listen on (default 0.0.0.0:443)")
    gw.add_argument("--backend", default="127.0.0.1:445", metavar="HOST:PORT",
                    help="the SMB server behind the gateway (default 127.0.0.1:445)")
    gw.add_argument("--cert", required=True, metavar="FILE", help="certificate (PEM)")
    gw.add_argument("--key", required=True, metavar="FILE", help="private key (PEM)")
    gw.add_argument("--retry", choices=["auto", "always", "never"], default="auto",
                    help="ask clients to prove their address first (stateless Retry): "
                    "always, never, or auto: while many handshakes are in progress "
                    "(default auto)")
    gw.add_argument("--max-connections", type=positive, default=1024, metavar="N",
                    help="connections at most, in all (default 1024)")
    gw.add_argument("--max-per-address", type=positive, default=64, metavar="N",
                    help="connections at most from one IP address (default 64)")
    gw.add_argument("--max-handshakes", type=positive, default=256, metavar="N",
                    help="handshakes in progress at most (default 256)")
    gw.add_argument("--handshake-timeout", type=positive_seconds, default=10.0,
                    metavar="SECONDS", help="drop a handshake not done by then (default 10)")
    gw.add_argument("--cc", choices=["auto", "cubic", "bbr"], default="auto",
                    help="QUIC congestion controller: bbr (ours, on aioquic: keeps its "
                    "pace through random loss), cubic (qh3's own: less CPU a packet), or "
                    "auto: cubic for clients on loopback, bbr for the rest (default auto)")
    gw.add_argument("--summary-interval", type=positive_seconds, default=60.0,
                    metavar="SECONDS",
                    help="log a summary of what was served and refused this often "
                    "(default 60)")
    probe = sub.add_parser("probe", help="what a server offers over QUIC and TCP, before "
                           "mounting and without logging in")
    probe.add_argument("server", metavar="HOST[:PORT]")
    probe.add_argument("-o", dest="options", default="", metavar="OPTIONS",
                       help="port=, quic_port=, transport=, cafile=, fingerprint=, cert=, "
                       "key=, connect_timeout=")
    probe.add_argument("--json", action="store_true", help="the report as JSON")
    stats = sub.add_parser("stats", help="a mount's connection: transport, RTT, bytes, "
                           "reconnects, migrations")
    stats.add_argument("mountpoint", metavar="MOUNTPOINT")
    stats.add_argument("--json", action="store_true", help="all counters, as JSON")
    demo = sub.add_parser("demo", help="a local share mounted over QUIC, to try quicfs "
                          "(from a source checkout: make demo)")
    demo.add_argument("action", choices=["start", "stop"])
    demo.add_argument("dir", nargs="?", default="demo", help="where it all lives (./demo)")
    cert = sub.add_parser("cert", help="certificates for the gateway and tests")
    cert_sub = cert.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    new = cert_sub.add_parser("new", help="make a self-signed certificate and key")
    new.add_argument("--name", required=True, help="server name (DNS name or IP address)")
    new.add_argument("--alt", action="append", default=[], metavar="NAME",
                     help="another name the certificate covers (repeatable)")
    new.add_argument("--out", default=".", metavar="DIR", help="where to write NAME.crt/.key")
    new.add_argument("--days", type=int, default=365)
    return p


def cmd_gateway(args: argparse.Namespace) -> int:
    import trio

    from quicfs.cert import check_files
    from quicfs.gateway import Gateway, parse_hostport, run_gateway
    from quicfs.transport.quic.admission import Limits

    check_files(cert=args.cert, key=args.key, names=("--cert ", "--key ", ""))
    limits = Limits(retry=args.retry, max_connections=args.max_connections,
                    max_per_address=args.max_per_address,
                    max_handshakes=args.max_handshakes,
                    handshake_timeout=args.handshake_timeout)
    gateway = Gateway(listen=parse_hostport(args.listen, "--listen"),
                      backend=parse_hostport(args.backend, "--backend"),
                      cert=args.cert, key=args.key, limits=limits,
                      summary_interval=args.summary_interval, cc=args.cc)
    logging.getLogger("quicfs.gateway").setLevel(logging.INFO)
    trio.run(run_gateway, gateway)
    return 0


def cmd_cert_new(args: argparse.Namespace) -> int:
    from quicfs.cert import write_self_signed

    files = write_self_signed(args.name, args.out, extra_names=args.alt, days=args.days)
    print(f"certificate: {files.cert}")
    print(f"key:         {files.key}")
    print(f"fingerprint={files.fingerprint}")
    return 0


#: Bash's $'...' escapes for the control characters that have one.
_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v",
              "\f": "\\f", "\r": "\\r", "\x1b": "\\e", "\\": "\\\\", "'": "\\'"}
#: Bidirectional overrides and isolates: they reorder what follows on the terminal line.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI


def shown_name(name: str) -> str:
    """A name from the server as it is safe to print: as it is, or, when it holds a control
    character (a newline would fake a line, ESC drive the terminal), quoted as GNU ls's
    shell-escape style does: ``$'...'`` with \\n, \\e, \\xHH (ASCII), \\uHHHH. Whether or not
    stdout is a terminal: output read by a script is no safer with a fake line in it."""
    if not any(_unsafe(c) for c in name):
        return name
    out = []
    for c in name:
        if c in _C_ESCAPES:
            out.append(_C_ESCAPES[c])
        elif not _unsafe(c):
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "$'" + "".join(out) + "'"


def _fmt_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns / 1e9))


async def cmd_ls(share: Share, url: ShareURL) -> int:
    target = await share.stat(url.path) if url.path else None
    if target is not None and not target.is_dir:
        entries = [target]
    else:
        entries = sorted(await share.listdir(url.path), key=lambda e: e.name)
    out = sys.stdout
    for e in entries:
        kind = "d" if e.is_dir else "-"
        name = shown_name(e.name) + ("/" if e.is_dir else "")
        out.write(f"{kind} {e.size:>14} {_fmt_time(e.mtime_ns)} {name}\n")
    out.flush()
    return 0


async def cmd_get(share: Share, url: ShareURL, local: str) -> int:
    if not url.path:
        raise UsageError(f"{url}: names a share, not a file")
    if local == "-":
        out = sys.stdout.buffer

        async def to_stdout(data: bytes) -> None:
            out.write(data)

        await share.download(url.path, to_stdout)
        out.flush()
        return 0
    dest = local
    if os.path.isdir(dest):
        dest = os.path.join(dest, url.path.rsplit("/", 1)[-1])
    if os.path.exists(dest) and not os.path.isfile(dest):
        # A device or pipe (/dev/null, a FIFO): write straight into it. Through a symbolic
        # link only when it is ours or root's (/dev/stdout): one that another user planted
        # in /tmp may point at a device of ours (what the kernel's protected_symlinks
        # refuses, where it is on).
        link = os.lstat(dest)
        if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.geteuid(), 0):
            raise UsageError(f"{dest}: a symbolic link of uid {link.st_uid}'s to a device "
                             "or pipe; not followed")
        fd = os.open(dest, os.O_WRONLY)
        try:
            await share.download(url.path, _fd_sink(fd))
        finally:
            os.close(fd)
        return 0
    # Write beside the destination and rename at the end: a failed transfer never leaves a
    # truncated file under the real name. The name is new and unguessable, and made with
    # O_EXCL|O_NOFOLLOW: in a shared directory (/tmp) another user may have planted a
    # symbolic link under a name we would otherwise write through.
    tmp = f"{dest}.{secrets.token_hex(6)}.quicfs-part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, dest) from None
    try:
        await share.download(url.path, _fd_sink(fd))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, dest)
    return 0


def _fd_sink(fd: int) -> Callable[[bytes], Awaitable[None]]:
    async def sink(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return sink


async def cmd_put(share: Share, local: str, url: ShareURL, to_dir: bool) -> int:
    import trio

    path = url.path
    name = "stdin" if local == "-" else os.path.basename(local.rstrip("/"))
    if not path or to_dir:
        path = f"{path.rstrip('/')}/{name}".lstrip("/")
    elif await _is_remote_dir(share, path):
        path = f"{path}/{name}"
    fd = sys.stdin.buffer.fileno() if local == "-" else os.open(local, os.O_RDONLY)
    if local != "-" and os.path.isdir(local):
        os.close(fd)
        raise UsageError(f"{local}: is a directory")

    async def source(n: int) -> bytes:
        return os.read(fd, n) if local != "-" else await trio.to_thread.run_sync(_read_full,
                                                                                 fd, n)

    # Upload under a temporary name and rename over the target when all of it is there.
    head, _, base = path.rpartition("/")
    tmp = f"{head}/.{base}.quicfs-part" if head else f".{base}.quicfs-part"
    try:
        await share.upload(source, tmp)
        await share.rename(tmp, path, replace=True)
    except BaseException:
        with trio.CancelScope(shield=True):
            try:
                await share.remove(tmp)
            except (QuicfsError, OSError):
                pass
        raise
    finally:
        if local != "-":
            os.close(fd)
    return 0


def _read_full(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = os.read(fd, n - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


async def _is_remote_dir(share: Share, path: str) -> bool:
    from quicfs.smb2.status import Status

    try:
        return (await share.stat(path)).is_dir
    except SMBError as exc:
        if exc.status in (Status.OBJECT_NAME_NOT_FOUND, Status.OBJECT_PATH_NOT_FOUND):
            return False
        raise


async def run(args: argparse.Namespace) -> int:
    from quicfs.cert import check_files
    from quicfs.client.share import connect

    url = parse_url(args.url)
    if args.command == "put" and args.local != "-" and not os.path.exists(args.local):
        raise FileNotFoundError(2, "No such file or directory", args.local)
    opts: Options = parse_options(args.options)
    check_files(cert=opts.cert, key=opts.key, cafile=opts.cafile)
    async with connect(url, opts) as share:
        if args.command == "ls":
            return await cmd_ls(share, url)
        if args.command == "get":
            return await cmd_get(share, url, args.local)
        return await cmd_put(share, args.local, url, args.url.endswith(("/", "\\")))


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # this process's own command line
        secret.protect(PROG)
    import trio

    from quicfs.cli.errors import describe

    args = _parser().parse_args(argv)
    level = logging.WARNING
    if args.verbose:
        level = logging.INFO
    if args.debug or "debug" in getattr(args, "options", "").split(","):
        level = logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(message)s")
    try:
        if args.command == "cert":
            return cmd_cert_new(args)
        if args.command == "gateway":
            return cmd_gateway(args)
        if args.command == "probe":
            from quicfs.cli.probe import cmd_probe

            return cmd_probe(args)
        if args.command == "stats":
            from quicfs.cli.stats import cmd_stats

            return cmd_stats(args.mountpoint, args.json)
        if args.command == "demo":
            from quicfs.cli.demo import cmd_demo

            return cmd_demo(args.action, args.dir)
        return trio.run(run, args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:  # the one place that turns errors into a line
        if args.debug:
            import traceback

            traceback.print_exc()
        message, code = describe(exc, args)
        print(f"{PROG}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
