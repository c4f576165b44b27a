"""Mount and command options (docs/mount.quicfs.md lists them), one parser for
`quicfs -o` and `mount.quicfs -o`. Pure: the only I/O is reading a credentials file.

Names follow mount.cifs where it has them. Unknown options are an error naming the option;
mount(8)'s generic flags are accepted and left to mount(8). A literal comma inside a value
is written ``,,`` as with mount.cifs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from quicfs.errors import UsageError
from quicfs.private import PrivateFileError, read_private

TRANSPORTS = ("auto", "quic", "tcp")
FALLBACKS = ("tcp", "none")


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None
    password: str | None
    domain: str | None

    def __repr__(self) -> str:
        shown = "***" if self.password is not None else None
        return f"Credentials(username={self.username!r}, password={shown!r}, " \
               f"domain={self.domain!r})"


@dataclass(frozen=True)
class Options:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    credentials: str | None = None
    domain: str | None = None
    port: int | None = None
    quic_port: int | None = None
    transport: str = "auto"
    #: transport=auto when QUIC does not connect: "tcp" may use TCP, "none" never does;
    #: None (unset): TCP unless fingerprint=, cafile= or cert= was given without seal
    #: (transport/connect.py).
    fallback: str | None = None
    #: QUIC congestion controller: auto, cubic or bbr (transport/quic/engine.py); None: auto.
    cc: str | None = None
    cafile: str | None = None
    fingerprint: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    seal: bool = False
    sign: bool = False
    uid: int | None = None
    gid: int | None = None
    file_mode: int | None = None
    dir_mode: int | None = None
    #: Keep Linux owners, modes and special files in EAs, as WSL does (smb2/lxmeta.py).
    metadata: bool = False
    actimeo: float = 1.0
    #: How long a closed file's handle is kept while its lease allows (cifs.ko's name).
    closetimeo: float = 1.0
    #: close(2) waits for the file's data to reach the server (``wait``), or, for a
    #: small file under a Write lease, not (``behind``: fs/operations.py flush).
    closeflush: str = "wait"
    rsize: int | None = None
    wsize: int | None = None
    echo_interval: float = 60.0
    hard: bool = True
    #: How long a soft mount waits for a lost server before calls fail.
    timeo: float = 30.0
    #: Entries one directory listing may bring at most (a server whose listing never
    #: ends fails the listing with ENOMEM instead of filling memory).
    max_dir_entries: int = 500_000
    ro: bool = False
    allow_other: bool = False
    netdev: bool = False
    nofail: bool = False
    debug: bool = False
    qlog: str | None = None
    connect_timeout: float = 5.0
    max_datagram_size: int | None = None
    #: Show the mount as type ``fuse`` rather than ``fuse.quicfs`` (xfstests' FSTYP=fuse
    #: checks the type); a remount must then name ``-t fuse.quicfs``.
    subtype: bool = True
    #: mount(8)'s generic VFS flags (noexec, relatime, ...), in the order given.
    vfs: tuple[str, ...] = ()

    def resolved_credentials(self) -> Credentials:
        """Credentials file, then explicit options (which win), then the environment
        the way mount.cifs reads it: USER (a ``user%password`` form is split) and PASSWD."""
        username, password, domain = None, None, None
        if self.credentials:
            creds = load_credentials(self.credentials)
            username, password, domain = creds.username, creds.password, creds.domain
        username = self.username if self.username is not None else username
        password = self.password if self.password is not None else password
        domain = self.domain if self.domain is not None else domain
        if username is None and os.environ.get("USER"):
            username = os.environ["USER"]
            if "%" in username and password is None:
                username, password = username.split("%", 1)
        if password is None and "PASSWD" in os.environ:
            password = os.environ["PASSWD"]
        if username is not None and "/" in username and domain is None:
            domain, username = username.split("/", 1)
        if username is not None and "\\" in username and domain is None:
            domain, username = username.split("\\", 1)
        return Credentials(username, password, domain)


def _int_range(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def conv(text: str) -> int:
        if not text.isdigit() or not lo <= int(text) <= hi:
            raise ValueError(f"expected {what}")
        return int(text)

    return conv


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 <= value < 1e9:
        raise ValueError("expected a number of seconds")
    return value


def _octal(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise ValueError("expected an octal mode such as 0644") from None
    if not 0 <= value <= 0o7777:
        raise ValueError("expected an octal mode such as 0644")
    return value


def _transport(text: str) -> str:
    if text not in TRANSPORTS:
        raise ValueError("expected quic, tcp or auto")
    return text


def _closeflush(text: str) -> str:
    if text not in ("wait", "behind"):
        raise ValueError("expected wait or behind")
    return text


def _fallback(text: str) -> str:
    if text not in FALLBACKS:
        raise ValueError("expected tcp or none")
    return text


def _cc(text: str) -> str:
    from quicfs.transport.quic.engine import CONTROLLERS

    if text not in CONTROLLERS:
        raise ValueError(f"expected {', '.join(CONTROLLERS[:-1])} or {CONTROLLERS[-1]}")
    return text


def _id(text: str) -> int:
    if text.isdigit():
        # uid_t is 32 bits and (uid_t)-1 means "no change" to chown(2): never an owner.
        if int(text) > 0xFFFF_FFFE:
            raise ValueError("expected a number from 0 to 4294967294 or a known name")
        return int(text)
    import grp
    import pwd

    for lookup in (pwd.getpwnam, grp.getgrnam):
        try:
            entry: Any = lookup(text)
            return int(entry[2])
        except KeyError:
            continue
    raise ValueError("expected a number or a known user/group name")


def _text(text: str) -> str:
    return text


_PORT = _int_range(1, 65535, "a number 1-65535")
_DATAGRAM = _int_range(1200, 65527, "a size from 1200 to 65527")
_SIZE = _int_range(4096, 16 * 1024 * 1024, "a size in bytes from 4096 to 16777216")
_ENTRIES = _int_range(1, 1 << 31, "a number of entries from 1 to 2147483648")

# option name -> (field, converter); a converter of None means a flag.
_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "username": ("username", _text),
    "user": ("username", _text),
    "password": ("password", _text),
    "pass": ("password", _text),
    "credentials": ("credentials", _text),
    "cred": ("credentials", _text),
    "domain": ("domain", _text),
    "dom": ("domain", _text),
    "workgroup": ("domain", _text),
    "port": ("port", _PORT),
    "quic_port": ("quic_port", _PORT),
    "transport": ("transport", _transport),
    "fallback": ("fallback", _fallback),
    "cc": ("cc", _cc),
    "cafile": ("cafile", _text),
    "fingerprint": ("fingerprint", _text),
    "cert": ("cert", _text),
    "key": ("key", _text),
    "uid": ("uid", _id),
    "gid": ("gid", _id),
    "file_mode": ("file_mode", _octal),
    "dir_mode": ("dir_mode", _octal),
    "actimeo": ("actimeo", _seconds),
    "closetimeo": ("closetimeo", _seconds),
    "closeflush": ("closeflush", _closeflush),
    "rsize": ("rsize", _SIZE),
    "wsize": ("wsize", _SIZE),
    "echo_interval": ("echo_interval", _seconds),
    "timeo": ("timeo", _seconds),
    "max_dir_entries": ("max_dir_entries", _ENTRIES),
    "qlog": ("qlog", _text),
    "connect_timeout": ("connect_timeout", _seconds),
    "max_datagram_size": ("max_datagram_size", _DATAGRAM),
}
_FLAGS: dict[str, tuple[str, bool]] = {
    "insecure": ("insecure", True),
    "seal": ("seal", True),
    "sign": ("sign", True),
    "hard": ("hard", True),
    "soft": ("hard", False),
    "ro": ("ro", True),
    "rw": ("ro", False),
    "allow_other": ("allow_other", True),
    "_netdev": ("netdev", True),
    "nofail": ("nofail", True),
    "debug": ("debug", True),
    "nosubtype": ("subtype", False),
    "metadata": ("metadata", True),
    "nometadata": ("metadata", False),
}
#: mount(8)'s flags for the mount itself (quicfs/fs/mountflags.py applies them).
VFS_FLAGS = frozenset({
    "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async", "dirsync",
    "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
    "nostrictatime", "lazytime", "nolazytime", "symfollow", "nosymfollow",
})
#: ``suid`` and ``dev`` under names mount(8) passes on to a helper (it drops those two).
#: suid and dev as mount(8) lets a helper be told them (it drops those two); an explicit
#: nosuid or nodev still wins (fs/mountflags.py).
_VFS_ALLOWS = frozenset({"allow_suid", "allow_dev"})
#: mount(8)'s own flags: accepted, meaning nothing to us.
_IGNORED = {
    "defaults", "auto", "noauto", "users", "nouser", "loud", "silent", "owner", "group",
    "nomand", "mand", "iversion", "noiversion", "remount",
}


def split_options(text: str) -> list[str]:
    """Split on single commas; ``,,`` stands for a literal comma (mount.cifs)."""
    items: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if i + 1 < len(text) and text[i + 1] == ",":
                current += ","
                i += 2
                continue
            items.append(current)
            current = ""
        else:
            current += c
        i += 1
    items.append(current)
    return [item for item in items if item != ""]


def parse_options(text: str | None, base: Options | None = None) -> Options:
    changes: dict[str, Any] = {}
    for item in split_options(text or ""):
        name, eq, value = item.partition("=")
        name = name.strip()
        if name == "user" and not eq:
            continue  # mount(8)'s "user" flag (allow users to mount); user=NAME is the name
        if name in _VALUES:
            fld, conv = _VALUES[name]
            if not eq:
                raise UsageError(f"option {name} needs a value ({name}=...)")
            if value == "" and fld not in ("password",):
                raise UsageError(f"option {name} needs a value ({name}=...)")
            try:
                changes[fld] = conv(value)
            except ValueError as exc:
                raise UsageError(f"bad value for option {name}: '{value}' ({exc})") from None
        elif name in _FLAGS:
            if eq:
                raise UsageError(f"option {name} takes no value")
            fld, flag = _FLAGS[name]
            changes[fld] = flag
        elif name in VFS_FLAGS or name in _VFS_ALLOWS:
            if eq:
                raise UsageError(f"option {name} takes no value")
            changes["vfs"] = (*changes.get("vfs", (base or Options()).vfs), name)
        elif name in _IGNORED or name.startswith("x-") or name == "comment":
            continue
        else:
            raise UsageError(f"unknown option '{name}'")
    opts = replace(base or Options(), **changes)
    if opts.fallback is not None and opts.transport != "auto":
        raise UsageError(f"option fallback= applies to transport=auto only, not "
                         f"transport={opts.transport}")
    return opts


def format_options(opts: Options) -> str:
    """The options that differ from the defaults, without the password (for logs)."""
    default = Options()
    out = []
    for f in fields(opts):
        value = getattr(opts, f.name)
        if value != getattr(default, f.name):
            out.append(f"{f.name}=***" if f.name == "password" else f"{f.name}={value}")
    return ",".join(out)


#: A credentials file holds three short lines; anything larger is not one.
CREDENTIALS_MAX = 64 * 1024


def load_credentials(path: str) -> Credentials:
    """A cifs-utils credentials file: ``username=``, ``password=``, ``domain=`` lines.

    It holds a password: it must be a regular file of the caller's (or root's), named
    itself (not through a symbolic link another user may have planted), and not readable
    by group or others. It is read through the descriptor those checks were made on.
    """
    try:
        data = read_private(path, max_size=CREDENTIALS_MAX, root_may_own=True)
    except PrivateFileError as exc:
        raise UsageError(f"credentials file {path}{exc.detail}") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"credentials file {path} is not UTF-8 text") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, eq, value = line.lstrip().partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"credentials file {path}, line {number}: expected key=value")
        key = {"user": "username", "pass": "password", "dom": "domain",
               "workgroup": "domain"}.get(key, key)
        if key not in ("username", "password", "domain"):
            raise UsageError(f"credentials file {path}, line {number}: unknown key '{key}'")
        values[key] = value
    return Credentials(values.get("username"), values.get("password"), values.get("domain"))
