"""A private Samba AD domain controller (realm QUICFS.TEST) on a loopback address of its
own: the KDC and file server that quicfs's Kerberos logins are tested against. Not in the
package: it knows fixed passwords and adds an address to ``lo``.

A DC listens on fixed ports (88 KDC, 445 SMB, 389 LDAP, 135 RPC...), so each runs on an
address of 127.0.88.0/24 taken under a lock file (``/run/lock``): test workers and
concurrent runs each get one (``bind interfaces only``; Samba binds only addresses an
interface has, so the address is added to ``lo`` while the DC runs). winbindd, which
smbd asks to map the domain's users to uids, has its socket at the compiled-in
/run/samba/winbindd; each DC runs in a mount namespace of its own where its directory is
bound there, so two DCs, and the host's own NSS (nsswitch.conf asks winbind), never meet.

Provisioning (``samba-tool domain provision``, ~15 s) is done once into a template
(``provision``); each DC copies it and adds the service principal of its address.

Shares: ``kerb``, and ``kerbsealed`` (``smb encrypt = required``). The DC's only cipher
is AES-256-GCM: a sealed share then proves a Kerberos session's keys (the 32-byte
subkey, MS-SMB2 3.2.5.3.1). Users: ``alice`` and ``bob``, passwords in USERS.
Service principals: ``cifs/<address>`` and ``cifs/127.0.0.1`` (a gateway there names
the server so).

Tickets: :meth:`DomainController.kinit` into a cache of the caller's; ``env`` gives the
KRB5_CONFIG and KRB5CCNAME a client runs with. The SMB session ends with the service
ticket it logged in with: after ``service_ticket(cache, 30)`` a request made past 30 s is
answered STATUS_NETWORK_SESSION_EXPIRED (a session renewal then needs a new ticket from
the cache). A short ticket-granting ticket would not do: Samba's KDC gives no service
ticket on one with 120 s or less left (the TGS-REQ fails "Ticket expired").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.localsmb import wait_listening

REALM = "QUICFS.TEST"
DOMAIN = "QUICFS"
NAME = "dc1"
ADMIN_PASSWORD = "Quic-fs-Admin-1"
USER = "alice"
PASSWORD = "Quic-fs-Alice-1"
USERS = {USER: PASSWORD, "bob": "Quic-fs-Bob-1"}
SHARES = ("kerb", "kerbsealed")
#: The addresses DCs take, one each.
ADDRESSES = tuple(f"127.0.88.{n}" for n in range(1, 65))
#: A gateway in front of the DC listens here (tests/support/gateway.py), and the client
#: asks the KDC for cifs/<the host it dials>.
GATEWAY_HOST = "127.0.0.1"
LOCKS = Path("/run/lock")
#: Asks for a service ticket of a given life: GSS-API's time_req becomes the TGS-REQ's
#: till (RFC 4120 5.4.1), and MIT krb5 keeps the ticket it gets in the cache.
_SERVICE_TICKET = (
    "import sys, gssapi\n"
    "name = gssapi.Name(sys.argv[1], gssapi.NameType.hostbased_service)\n"
    "gssapi.SecurityContext(name=name, usage='initiate', lifetime=int(sys.argv[2])).step()\n")
#: winbindd's socket directory, compiled in (libwbclient looks nowhere else).
WINBINDD_RUN = Path("/run/samba")


class DCError(RuntimeError):
    pass


def _run(*cmd: str, stdin: str | None = None, env: dict[str, str] | None = None,
         timeout: float = 120) -> str:
    proc = subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise DCError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n"
                      f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def provision(template: Path) -> Path:
    """The provisioned domain in ``template``, made there unless it already is (under a
    lock: test workers of one run share one)."""
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.parent / f"{template.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / "ready").exists():
            return template
        for tool in ("samba", "samba-tool"):
            if shutil.which(tool) is None:
                raise DCError(f"{tool} is not installed (apt-get install samba-ad-dc)")
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        _run("samba-tool", "domain", "provision", f"--targetdir={template}",
             f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc",
             "--dns-backend=NONE", f"--adminpass={ADMIN_PASSWORD}", f"--host-name={NAME}",
             f"--host-ip={ADDRESSES[0]}", timeout=300)
        conf = str(template / "etc" / "smb.conf")
        for user, password in USERS.items():
            _run("samba-tool", "user", "create", user, password, "-s", conf)
            _run("samba-tool", "user", "setexpiry", user, "--noexpiry", "-s", conf)
        _run("samba-tool", "spn", "add", f"cifs/{GATEWAY_HOST}", f"{NAME.upper()}$", "-s", conf)
        (template / "ready").touch()
        return template


def _claim_address() -> tuple[str, object]:
    """The first address of ADDRESSES no other DC holds, and the lock that holds it."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    for address in ADDRESSES:
        lock = open(LOCKS / f"quicfs-test-dc-{address}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return address, lock
    raise DCError(f"every address of {ADDRESSES[0]}-{ADDRESSES[-1]} has a DC")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class DomainController:
    def __init__(self, root: Path, template: Path, *,
                 extra_global: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.template = Path(template)
        self.extra_global = dict(extra_global or {})
        self.host = ""
        self.port = 445
        self.realm = REALM
        self.domain = DOMAIN
        self.username = USER
        self.password = PASSWORD
        self.conf = self.root / "etc" / "smb.conf"
        #: The clients' krb5.conf: this DC is the realm's KDC.
        self.krb5_conf = self.root / "krb5.conf"
        self.log = self.root / "log" / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: object | None = None
        self._added_address = False

    # ------------------------------------------------------------------ clients
    def share_path(self, name: str) -> Path:
        return self.root / "shares" / name

    def url(self, share: str, path: str = "") -> str:
        base = f"//{self.host}/{share}"
        return f"{base}/{path}" if path else base

    def env(self, ccache: Path, krb5_conf: Path | None = None) -> dict[str, str]:
        """The environment of a client that uses this realm (``krb5_conf``, else the
        one naming this DC as the KDC) and the ticket cache ``ccache``."""
        return {**os.environ, "KRB5_CONFIG": str(krb5_conf or self.krb5_conf),
                "KRB5CCNAME": f"FILE:{ccache}"}

    def kinit(self, ccache: Path, user: str = USER, *, password: str | None = None,
              lifetime: str | None = None, krb5_conf: Path | None = None) -> None:
        """A ticket for ``user`` into ``ccache`` (``lifetime`` as kinit -l takes it; the
        KDC gives no service ticket on one with 120 s or less left)."""
        _run("kinit", *(["-l", lifetime] if lifetime else []), f"{user}@{REALM}",
             stdin=f"{password or USERS[user]}\n", env=self.env(ccache, krb5_conf))

    def service_ticket(self, ccache: Path, seconds: int, *, alone: bool = False) -> None:
        """A ticket for this DC's file server that ends ``seconds`` from now, into
        ``ccache``, which holds a ticket-granting ticket (:meth:`kinit`): a session
        logged in with it ends then. ``alone``: the cache then holds that ticket only,
        as a cache whose ticket-granting ticket lapsed would, so nothing in it can renew
        the session."""
        env = self.env(ccache)
        _run(sys.executable, "-c", _SERVICE_TICKET, f"cifs@{self.host}", str(seconds), env=env)
        if alone:
            only = ccache.with_name(f"{ccache.name}.alone")
            # MIT krb5 files the ticket under the name it asked for, realm left to the
            # KDC's referral: "cifs/HOST@".
            _run("kvno", "--cached-only", "--out-cache", f"FILE:{only}", f"cifs/{self.host}@",
                 env=env)
            only.replace(ccache)

    def write_krb5_conf(self, path: Path, kdc: str | None = None,
                        http_anchors: Path | None = None) -> Path:
        """A client's krb5.conf for the realm, its KDC this DC or ``kdc`` (such as an
        MS-KKDCP proxy's https://HOST:PORT/KdcProxy, whose certificate's CA is
        ``http_anchors``)."""
        anchors = f"    http_anchors = FILE:{http_anchors}\n" if http_anchors else ""
        path.write_text(
            "[libdefaults]\n"
            f"  default_realm = {REALM}\n"
            "  dns_lookup_realm = false\n"
            "  dns_lookup_kdc = false\n"
            # The client names the server as the URL has it: an address is its SPN here.
            "  dns_canonicalize_hostname = false\n"
            "  rdns = false\n"
            "[realms]\n"
            f"  {REALM} = {{\n    kdc = {kdc or self.host}\n{anchors}  }}\n"
        )
        return path

    # ------------------------------------------------------------------ config
    def _write_config(self) -> None:
        r = self.root
        for d in ("log", "pid", "run", "cache", "ncalrpc"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for share in SHARES:
            p = self.share_path(share)
            p.mkdir(parents=True, exist_ok=True)
            p.chmod(0o777)  # the domain users' uids are winbind's (idmap), not known here
        glob = {
            "workgroup": DOMAIN,
            "realm": REALM,
            "netbios name": NAME.upper(),
            "server role": "active directory domain controller",
            "server services": "s3fs, rpc, kdc, winbindd, ldap",
            "prefork children": "1",
            "interfaces": self.host,
            "bind interfaces only": "yes",
            "smb ports": str(self.port),
            "disable netbios": "yes",
            "private dir": str(r / "private"),
            "lock directory": str(r),
            "state directory": str(r / "state"),
            "cache directory": str(r / "cache"),
            "pid directory": str(r / "pid"),
            "ncalrpc dir": str(r / "ncalrpc"),
            "binddns dir": str(r / "bind-dns"),
            "log file": str(self.root / "log" / "samba.log"),
            "max log size": "0",
            "log level": os.environ.get("QUICFS_SMBD_LOG_LEVEL", "1"),
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "usershare path": "",
            "dns proxy": "no",
            "map to guest": "Never",
            "server signing": "mandatory",
            "server smb3 encryption algorithms": "AES-256-GCM",
        }
        glob.update(self.extra_global)
        lines = ["[global]"] + [f"  {k} = {v}" for k, v in glob.items()]
        for share in SHARES:
            lines += [f"[{share}]", f"  path = {self.share_path(share)}", "  read only = no"]
            if share == "kerbsealed":
                lines.append("  smb encrypt = required")
        self.conf.write_text("\n".join(lines) + "\n")
        self.write_krb5_conf(self.krb5_conf)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> DomainController:
        self.host, self._lock = _claim_address()
        try:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.copytree(self.template, self.root, symlinks=True)
            self.root.chmod(0o755)
            self._write_config()
            _run("samba-tool", "spn", "add", f"cifs/{self.host}", f"{NAME.upper()}$",
                 "-s", str(self.conf))
            # The address is ours while the lock is (one a DC that was killed left on lo
            # included): added, and taken away at stop().
            proc = subprocess.run(["ip", "addr", "replace", f"{self.host}/32", "dev", "lo"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise DCError(f"ip addr replace {self.host}/32 dev lo: {proc.stderr.strip()}")
            self._added_address = True
            WINBINDD_RUN.mkdir(parents=True, exist_ok=True)
            samba = shutil.which("samba") or "/usr/sbin/samba"
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                 'mount --bind "$0" "$1" && exec "$2" -i --no-process-group -s "$3"',
                 str(self.root / "run"), str(WINBINDD_RUN), samba, str(self.conf)],
                stdout=open(self.log, "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends every child
            )
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self.proc is not None
        why = wait_listening(self.proc, "samba", self.host, [88, self.port], 60)
        if why is not None:
            raise DCError(f"{why}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            # Every process of the group gone, not only the first: a child still holding
            # port 88 or 445 would be in the way of the next DC on this address.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _group_alive(self.proc.pid):
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    deadline = time.monotonic() + 15
                self.proc.poll()
                time.sleep(0.05)
            self.proc.wait(timeout=10)
        self.proc = None
        if self._added_address:
            subprocess.run(["ip", "addr", "del", f"{self.host}/32", "dev", "lo"],
                           capture_output=True)
            self._added_address = False
        if self._lock is not None:
            self._lock.close()  # type: ignore[attr-defined]
            self._lock = None

    def close(self) -> None:
        """Stopped, and its files gone."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        """The end of what samba and its servers said (``-i`` logs to standard output)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])
