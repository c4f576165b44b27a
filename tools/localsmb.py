"""A private Samba smbd on a free loopback port, with its own smb.conf and state: the
server of the test suite, the benchmarks, xfstests/run and `quicfs demo`. Not in the
package: it adds a Unix user and knows a fixed password.

Shares: ``plain``, ``signed`` and ``sealed``. ``server signing`` is a global parameter in
Samba (there is no per-share signing), so the server runs with ``server signing =
mandatory`` and every share, ``signed`` included, is served only to signing clients;
``sealed`` adds the per-share ``smb encrypt = required``. ``plain`` differs from ``signed``
in name only, kept so tests read as the issue names the shares.

If smbd cannot start, the error carries the tail of its log: a fixture that cannot start
its server fails, it never skips.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

USER = "quicfstest"
PASSWORD = "Quic-fs-test-1"
SHARES = ("plain", "signed", "sealed")


class SambaError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Held while the user is looked for and made: servers started at once (test workers)
#: would each run useradd, and on a fresh machine two of them were seen to leave their
#: shares owned by two different uids, one of them no longer the user's (every write
#: then STATUS_ACCESS_DENIED).
USER_LOCK = Path("/run/lock/quicfs-test-user.lock")


def ensure_unix_user(name: str = USER) -> pwd.struct_passwd:
    """smbd maps every SMB user to a Unix account; make a system one if it is missing."""
    USER_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(USER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        proc = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             name], capture_output=True, text=True,
        )
        if proc.returncode not in (0, 9):  # 9: another program made it meanwhile
            raise SambaError(f"useradd {name} failed: {proc.stderr.strip()}")
        return pwd.getpwnam(name)


def wait_listening(proc: subprocess.Popen[bytes], name: str, host: str, ports: list[int],
                   within: float) -> str | None:
    """Wait until each of ``ports`` on ``host`` takes a connection, in turn; None then,
    else why not: ``name`` (the server ``proc`` runs) exited, or did not listen in time."""
    deadline = time.monotonic() + within
    waiting = list(ports)
    while waiting:
        if proc.poll() is not None:
            return f"{name} exited with {proc.returncode}"
        if time.monotonic() > deadline:
            return f"{name} did not listen on {host} port {waiting[0]} in {within:g} s"
        try:
            with socket.create_connection((host, waiting[0]), timeout=0.5):
                waiting.pop(0)
        except OSError:
            time.sleep(0.1)
    return None


class SambaServer:
    def __init__(self, root: Path, *, extra_global: dict[str, str] | None = None,
                 signing_mandatory: bool = True, password: str = PASSWORD,
                 port: int | None = None, shares: tuple[str, ...] = SHARES,
                 share_options: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.username = USER
        self.password = password
        self.extra_global = dict(extra_global or {})
        self.signing_mandatory = signing_mandatory
        self.shares = shares
        #: Lines added to every share's section.
        self.share_options = dict(share_options or {})
        self.conf = self.root / "smb.conf"
        self.log = self.root / "log" / "smbd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ paths
    def share_path(self, name: str) -> Path:
        return self.root / "shares" / name

    def mkdir(self, share: str, rel: str) -> Path:
        """A directory made behind the server's back, owned by the share's user."""
        p = self.share_path(share) / rel
        p.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam(self.username)
        os.chown(p, user.pw_uid, user.pw_gid)
        return p

    def url(self, share: str, path: str = "") -> str:
        base = f"//{self.host}:{self.port}/{share}"
        return f"{base}/{path}" if path else base

    # ------------------------------------------------------------------ config
    def _write_config(self) -> None:
        user = ensure_unix_user(self.username)
        dirs = ["private", "lock", "state", "cache", "pid", "ncalrpc", "log", "shares"]
        # The share owner must be able to walk down to its share (mkdtemp makes 0700).
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for d in dirs:
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for share in self.shares:
            p = self.share_path(share)
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, user.pw_uid, user.pw_gid)
        r = self.root
        glob = {
            "workgroup": "QUICFS",
            "netbios name": "QUICFSTEST",
            "server role": "standalone server",
            "smb ports": str(self.port),
            "interfaces": "127.0.0.1",
            "bind interfaces only": "yes",
            "disable netbios": "yes",
            "private dir": str(r / "private"),
            "lock directory": str(r / "lock"),
            "state directory": str(r / "state"),
            "cache directory": str(r / "cache"),
            "pid directory": str(r / "pid"),
            "ncalrpc dir": str(r / "ncalrpc"),
            "log file": str(self.log),
            "max log size": "0",
            # QUICFS_SMBD_LOG_LEVEL: smbd's own account of a test (10 for everything).
            "log level": os.environ.get("QUICFS_SMBD_LOG_LEVEL", "1"),
            "passdb backend": f"tdbsam:{r / 'private' / 'passdb.tdb'}",
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "map to guest": "Never",
            "server min protocol": "SMB2_02",
            "smb2 leases": "yes",
            "kernel oplocks": "no",
            "kernel share modes": "no",
            "posix locking": "no",
            "server signing": "mandatory" if self.signing_mandatory else "auto",
            "usershare path": "",
            "registry shares": "no",
            "dns proxy": "no",
            "server services": "-nbt",
        }
        glob.update(self.extra_global)
        lines = ["[global]"] + [f"  {k} = {v}" for k, v in glob.items()]
        for share in self.shares:
            lines += [
                f"[{share}]",
                f"  path = {self.share_path(share)}",
                "  read only = no",
                "  browseable = yes",
                f"  valid users = {self.username}",
                "  durable handles = yes",
                "  ea support = yes",
                "  store dos attributes = yes",
                "  create mask = 0644",
                "  directory mask = 0755",
            ]
            lines += [f"  {k} = {v}" for k, v in self.share_options.items()]
            if share == "sealed":
                lines.append("  smb encrypt = required")
        self.conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.run(
            ["smbpasswd", "-c", str(self.conf), "-a", "-s", self.username],
            input=f"{self.password}\n{self.password}\n", capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SambaError(f"smbpasswd failed: {proc.stdout}{proc.stderr}")

    # ------------------------------------------------------------------ lifetime
    def start(self) -> SambaServer:
        if shutil.which("smbd") is None and not Path("/usr/sbin/smbd").exists():
            raise SambaError("smbd is not installed (apt-get install samba)")
        smbd = shutil.which("smbd") or "/usr/sbin/smbd"
        self._write_config()
        self.proc = subprocess.Popen(
            [smbd, "--foreground", "--no-process-group", "--debug-stdout",
             "-s", str(self.conf)],
            stdout=open(self.root / "log" / "stdout.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills every child
        )
        try:
            self._wait_listening()
        except BaseException:
            # A caller stopped meanwhile (a signal, Ctrl-C) has no server to stop yet.
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self.proc is not None
        why = wait_listening(self.proc, "smbd", self.host, [self.port], 20)
        if why is not None:
            raise SambaError(f"{why}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> SambaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        text = ""
        for f in (self.log, self.root / "log" / "stdout.log"):
            if f.exists():
                text += f.read_text(errors="replace")
        return "\n".join(text.splitlines()[-n:])

    # ------------------------------------------------------------------ peers
    def smbclient(self, share: str, command: str, *options: str,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Samba's own client against this server, as a second opinion."""
        return subprocess.run(
            ["smbclient", f"//{self.host}/{share}", "-p", str(self.port),
             "-U", f"{self.username}%{self.password}", *options, "-c", command],
            capture_output=True, text=True, timeout=timeout,
        )
