"""The `quicfs` command as a user runs it: content, messages and exit codes."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

import pytest

QUICFS = [sys.executable, "-m", "quicfs.cli.main"]


def run(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*QUICFS, *args], input=stdin, capture_output=True, timeout=timeout)


def creds(samba, **extra: str) -> str:
    parts = ["transport=tcp", f"username={samba.username}", f"password={samba.password}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return ",".join(parts)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("share", ["plain", "signed", "sealed"])
def test_put_get_ls(samba, share, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    url = samba.url(share)
    proc = run("put", "-o", creds(samba), str(src), f"{url}/cli.bin")
    assert proc.returncode == 0, proc.stderr
    assert samba.share_path(share).joinpath("cli.bin").read_bytes() == data
    # no temporary file is left behind
    assert [p.name for p in samba.share_path(share).iterdir() if "quicfs-part" in p.name] == []
    out = tmp_path / "out.bin"
    proc = run("get", "-o", creds(samba), f"{url}/cli.bin", str(out))
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    proc = run("ls", "-o", creds(samba), url)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.decode().splitlines() if ln.endswith(" cli.bin")]
    assert len(line) == 1 and line[0].split()[1] == str(len(data))


def test_stdin_stdout(samba):
    data = os.urandom(2 * 1024 * 1024 + 5)
    url = samba.url("plain", "piped.bin")
    proc = run("put", "-o", creds(samba), "-", url, stdin=data)
    assert proc.returncode == 0, proc.stderr
    proc = run("get", "-o", creds(samba), url, "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data


def test_put_into_directory_and_get_into_directory(samba, tmp_path):
    samba.mkdir("plain", "into")
    src = tmp_path / "named.txt"
    src.write_bytes(b"named")
    assert run("put", "-o", creds(samba), str(src), samba.url("plain", "into")).returncode == 0
    assert (samba.share_path("plain") / "into" / "named.txt").read_bytes() == b"named"
    dest = tmp_path / "d"
    dest.mkdir()
    proc = run("get", "-o", creds(samba), samba.url("plain", "into/named.txt"), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "named.txt").read_bytes() == b"named"


def test_credentials_file(samba, tmp_path):
    cred = tmp_path / "cred"
    cred.write_text(f"username={samba.username}\npassword={samba.password}\n")
    cred.chmod(0o600)
    proc = run("ls", "-o", f"transport=tcp,credentials={cred}", samba.url("plain"))
    assert proc.returncode == 0, proc.stderr
    cred.chmod(0o644)
    proc = run("ls", "-o", f"transport=tcp,credentials={cred}", samba.url("plain"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: credentials file {cred} is readable by group or others (mode 0644); "
        f"run chmod 600 {cred}"
    )
    proc = run("ls", "-o", f"transport=tcp,credentials={tmp_path / 'nope'}", samba.url("plain"))
    assert proc.returncode == 2
    assert one_line_error(proc) == f"quicfs: credentials file {tmp_path / 'nope'}: no such file"


def test_credentials_file_planted(samba, tmp_path):
    """A credentials file is a password source only when it is the caller's (or root's)
    own file, named itself: not one another user owns, nor a symbolic link (which another
    user may point at a file of theirs in a shared directory)."""
    cred = tmp_path / "cred"
    cred.write_text(f"username={samba.username}\npassword={samba.password}\n")
    cred.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(cred)
    proc = run("ls", "-o", f"transport=tcp,credentials={link}", samba.url("plain"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: credentials file {link} is a symbolic link; name the file itself")
    os.chown(cred, 65534, 65534)
    proc = run("ls", "-o", f"transport=tcp,credentials={cred}", samba.url("plain"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        f"quicfs: credentials file {cred} belongs to uid 65534, not to you (uid 0) or root")


def test_get_never_writes_through_a_planted_symlink(samba, tmp_path):
    """`quicfs get URL DIR/X` in a directory others can write (/tmp): a symbolic link
    planted where the temporary file would go must not be written through."""
    (samba.share_path("plain") / "planted.txt").write_bytes(b"from the share\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"the victim's own data\n")
    dest = tmp_path / "X"
    (tmp_path / "X.quicfs-part").symlink_to(victim)
    proc = run("get", "-o", creds(samba), samba.url("plain", "planted.txt"), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"the victim's own data\n"
    assert dest.read_bytes() == b"from the share\n" and not dest.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "X.quicfs-part", "victim"]
    # A link to a device is followed only when it is ours (or root's), as /dev/stdout is.
    for owner, code in ((0, 0), (65534, 2)):
        dev = tmp_path / f"dev-{owner}"
        dev.symlink_to("/dev/null")
        os.lchown(dev, owner, owner)
        proc = run("get", "-o", creds(samba), samba.url("plain", "planted.txt"), str(dev))
        assert proc.returncode == code, proc.stderr
    assert one_line_error(proc) == (f"quicfs: {dev}: a symbolic link of uid 65534's to a "
                                    "device or pipe; not followed")


def test_wrong_password(samba):
    proc = run("ls", "-o", f"transport=tcp,username={samba.username},password=wrong",
               samba.url("plain"))
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: logon failure for user '{samba.username}' on //{samba.host}:{samba.port}: "
        "wrong user name or password"
    )


def test_unknown_share(samba):
    proc = run("ls", "-o", creds(samba), samba.url("nosuchshare"))
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: //{samba.host}:{samba.port}/nosuchshare: no such share on the server"
    )


def test_missing_file_and_directory_as_file(samba, tmp_path):
    url = samba.url("plain", "does/not/exist.txt")
    proc = run("get", "-o", creds(samba), url, str(tmp_path / "x"))
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: {url}: no such file or directory (STATUS_OBJECT_PATH_NOT_FOUND)"
    )
    assert list(tmp_path.iterdir()) == []  # neither x nor its temporary file
    samba.mkdir("plain", "somedir")
    url = samba.url("plain", "somedir")
    proc = run("get", "-o", creds(samba), url, str(tmp_path / "y"))
    assert proc.returncode == 1
    assert one_line_error(proc) == f"quicfs: {url}: is a directory (STATUS_FILE_IS_A_DIRECTORY)"


def test_port_closed(tmp_path):
    port = free_port()
    proc = run("ls", "-o", "transport=tcp,username=u,password=p", f"//127.0.0.1:{port}/share")
    assert proc.returncode == 1
    assert one_line_error(proc) == (
        f"quicfs: connection refused by 127.0.0.1:{port} (is an SMB server listening there?)"
    )


def test_host_unreachable_within_timeout():
    # A listening socket that never accepts fills its backlog; connects then hang, so the
    # connect timeout decides. 127.0.0.1 only, per the house rules.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        proc = run("ls", "-o", "transport=tcp,username=u,password=p,connect_timeout=1",
                   f"//127.0.0.1:{port}/share", timeout=30)
    finally:
        for c in fillers:
            c.close()
        srv.close()
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line in (
        f"quicfs: no TCP answer from 127.0.0.1:{port} within 1 s",
        f"quicfs: //127.0.0.1:{port}/share: timed out",
    ), line


@pytest.mark.parametrize(
    "url, message",
    [
        ("nothing", "quicfs: malformed URL 'nothing': expected //HOST[:PORT]/SHARE[/PATH]"),
        ("//host", "quicfs: URL '//host' names no share"),
    ],
)
def test_malformed_url(url, message):
    proc = run("ls", "-o", "transport=tcp", url)
    assert proc.returncode == 2
    assert one_line_error(proc) == message


def test_unknown_option(samba):
    proc = run("ls", "-o", "transport=tcp,bogus=1", samba.url("plain"))
    assert proc.returncode == 2
    assert one_line_error(proc) == "quicfs: unknown option 'bogus'"


def test_local_file_missing(samba, tmp_path):
    proc = run("put", "-o", creds(samba), str(tmp_path / "absent"), samba.url("plain", "x"))
    assert proc.returncode == 1
    assert one_line_error(proc) == f"quicfs: {tmp_path / 'absent'}: No such file or directory"


def test_get_into_missing_local_directory(samba, tmp_path):
    (samba.share_path("plain") / "g.txt").write_bytes(b"g")
    dest = tmp_path / "no" / "such" / "dir" / "g.txt"
    proc = run("get", "-o", creds(samba), samba.url("plain", "g.txt"), str(dest))
    assert proc.returncode == 1
    assert one_line_error(proc) == f"quicfs: {dest}: No such file or directory"


def test_ls_escapes_control_characters_in_names(samba_factory):
    """A name from the server must not drive the terminal (ESC, CSI) nor fake a line: such
    names are shown in bash's $'...' quoting, the rest as they are. Samba sends control
    characters raw with mangled names = no (otherwise it shows an 8.3 name instead)."""
    server = samba_factory(extra_global={"mangled names": "no"})
    names = {"esc\x1b[31mred": "$'esc\\e[31mred'", "two\nlines": "$'two\\nlines'",
             "csi\u009b2J": "$'csi\\u009b2J'", "rlo\u202etxt.exe": "$'rlo\\u202etxt.exe'",
             "it's\\\x7f": "$'it\\'s\\\\\\x7f'", "plain é": "plain é"}
    for name in names:
        (server.share_path("plain") / name).write_bytes(b"x")
    proc = run("ls", "-o", creds(server), server.url("plain"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    # Each line: kind, size, date, time, name.
    shown = sorted(line.split(None, 4)[4] for line in out.splitlines())
    assert shown == sorted(names.values()), out
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) < 0xa0 for c in out)


def test_unusable_certificate_files_are_usage_errors(tmp_path):
    """qh3 reads cert=/key= only when a connection starts, and fails there with an
    IndexError (or a panic in its Rust core for a bad key): the files are checked first."""
    from quicfs.cert import write_self_signed

    good = write_self_signed("client", tmp_path / "a")
    other = write_self_signed("client", tmp_path / "b")
    junk = tmp_path / "junk"
    junk.write_text("not a certificate\n")
    url = f"//127.0.0.1:{free_port()}/share"
    for opts, message in (
        (f"cert={junk},key={good.key}", f"cert={junk}: not a PEM certificate"),
        (f"cert={good.cert},key={junk}", f"key={junk}: not a PEM private key"),
        (f"cert={good.cert},key={other.key}",
         f"key={other.key} is not the key of the certificate in cert={good.cert}"),
        (f"cafile={junk}", f"cafile={junk}: not a PEM certificate"),
    ):
        proc = run("ls", "-o", f"transport=quic,username=u,password=p,{opts}", url)
        assert (proc.returncode, one_line_error(proc)) == (2, f"quicfs: {message}")
    for cert, key, message in ((junk, good.key, f"--cert {junk}: not a PEM certificate"),
                               (good.cert, junk, f"--key {junk}: not a PEM private key")):
        proc = run("gateway", "--listen", f"127.0.0.1:{free_port()}", "--cert", str(cert),
                   "--key", str(key), timeout=30)
        assert (proc.returncode, one_line_error(proc)) == (2, f"quicfs: {message}")


def test_gateway_that_cannot_listen_names_the_address(tmp_path):
    """A port taken (or one under 1024 without the capability) is one line that names
    the address, not a bare 'Address already in use'."""
    import socket

    from quicfs.cert import write_self_signed

    pair = write_self_signed("gateway", tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = run("gateway", "--listen", f"127.0.0.1:{port}", "--cert", str(pair.cert),
                   "--key", str(pair.key), timeout=30)
    assert (proc.returncode, one_line_error(proc)) == (
        1, f"quicfs: UDP 127.0.0.1:{port}: Address already in use")


def test_long_host_label_and_huge_uid_are_usage_errors():
    host = "a" * 64 + ".example"
    proc = run("ls", "-o", "transport=tcp,username=u,password=p", f"//{host}/share")
    assert proc.returncode == 2
    assert one_line_error(proc) == (f"quicfs: bad host '{host}' in URL '//{host}/share': each "
                                    "dot-separated part of a name is 1 to 63 characters")
    proc = run("ls", "-o", "transport=tcp,uid=4294967296", "//127.0.0.1/share")
    assert proc.returncode == 2
    assert one_line_error(proc) == ("quicfs: bad value for option uid: '4294967296' (expected "
                                    "a number from 0 to 4294967294 or a known name)")
