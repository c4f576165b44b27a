"""Share URLs and options: exact results and exact messages."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quicfs.errors import UsageError
from quicfs.options import Options, load_credentials, parse_options, split_options
from quicfs.url import ShareURL, parse_url


@pytest.mark.parametrize(
    "text, expected",
    [
        ("//srv/share", ShareURL("srv", None, "share", "")),
        ("//srv:4450/share/a/b/", ShareURL("srv", 4450, "share", "a/b")),
        ("\\\\srv\\share\\dir\\f.txt", ShareURL("srv", None, "share", "dir/f.txt")),
        ("smb://srv/share/x", ShareURL("srv", None, "share", "x")),
        ("//[::1]:4450/s/p", ShareURL("::1", 4450, "s", "p")),
        ("//srv/share/a/./b/../c", ShareURL("srv", None, "share", "a/c")),
    ],
)
def test_parse_url(text, expected):
    assert parse_url(text) == expected


def test_url_str_and_join():
    u = parse_url("//[::1]:4450/s/p")
    assert str(u) == "//[::1]:4450/s/p"
    assert str(u.join("q/r")) == "//[::1]:4450/s/p/q/r"
    assert u.smb_path == "p"
    assert parse_url("//h/s/a/b").smb_path == "a\\b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("nothing", "malformed URL 'nothing': expected //HOST[:PORT]/SHARE[/PATH]"),
        ("//host", "URL '//host' names no share"),
        ("//host/", "URL '//host/' names no share"),
        ("//h:abc/s", "bad port 'abc' in URL '//h:abc/s'"),
        ("//h:70000/s", "bad port '70000' in URL '//h:70000/s'"),
        ("//h/s/../../etc", "path in URL '//h/s/../../etc' leaves the share"),
        ("//u@h/s", "URL '//u@h/s' carries credentials; use -o username=... instead"),
        ("//::1/s", "IPv6 address in URL '//::1/s' must be in brackets: //[ADDR]:PORT/SHARE"),
        (f"//{'a' * 64}/s", f"bad host '{'a' * 64}' in URL '//{'a' * 64}/s': each "
                            "dot-separated part of a name is 1 to 63 characters"),
        ("//a..b/s", "bad host 'a..b' in URL '//a..b/s': each dot-separated part of a name "
                     "is 1 to 63 characters"),
        (f"//{'a.' * 127}a/s", f"bad host '{'a.' * 127}a' in URL '//{'a.' * 127}a/s': a name "
                               "is at most 253 characters"),
    ],
)
def test_bad_urls(text, message):
    with pytest.raises(UsageError) as err:
        parse_url(text)
    assert str(err.value) == message


@given(st.text(max_size=60))
def test_parse_url_never_crashes(text):
    try:
        parse_url(text)
    except UsageError:
        pass


def test_parse_options():
    o = parse_options("user=bob,pass=a,,b,seal,transport=tcp,port=4450,noatime,x-systemd.auto,"
                      "file_mode=0640,actimeo=2.5,soft,ro,cc=bbr")
    assert o.username == "bob" and o.password == "a,b" and o.seal
    assert o.transport == "tcp" and o.port == 4450 and o.file_mode == 0o640
    assert o.actimeo == 2.5 and not o.hard and o.ro and o.cc == "bbr"
    assert "a,b" not in repr(o)


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus", "unknown option 'bogus'"),
        ("bogus=1", "unknown option 'bogus'"),
        ("port=x", "bad value for option port: 'x' (expected a number 1-65535)"),
        ("port", "option port needs a value (port=...)"),
        ("seal=1", "option seal takes no value"),
        ("transport=udp", "bad value for option transport: 'udp' (expected quic, tcp or auto)"),
        ("cc=reno", "bad value for option cc: 'reno' (expected auto, cubic or bbr)"),
        ("file_mode=999", "bad value for option file_mode: '999' "
                          "(expected an octal mode such as 0644)"),
        ("uid=4294967295", "bad value for option uid: '4294967295' "
                           "(expected a number from 0 to 4294967294 or a known name)"),
    ],
)
def test_bad_options(text, message):
    with pytest.raises(UsageError) as err:
        parse_options(text)
    assert str(err.value) == message


def test_user_flag_and_user_value():
    assert parse_options("user").username is None
    assert parse_options("user=alice").username == "alice"


def test_split_options_escapes():
    assert split_options("a=1,,2,b") == ["a=1,2", "b"]
    assert split_options(",,,") == [","]


@given(st.text(max_size=80))
def test_parse_options_never_crashes(text):
    try:
        parse_options(text)
    except UsageError:
        pass


def test_credentials_file(tmp_path, monkeypatch):
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("PASSWD", raising=False)
    f = tmp_path / "cred"
    f.write_text("# comment\n\nusername=alice\npassword= sp ace=\ndomain=CORP\n")
    f.chmod(0o600)
    c = load_credentials(str(f))
    assert (c.username, c.password, c.domain) == ("alice", " sp ace=", "CORP")
    o = parse_options(f"credentials={f},password=override")
    assert o.resolved_credentials().password == "override"
    assert o.resolved_credentials().username == "alice"
    f.chmod(0o640)
    with pytest.raises(UsageError) as err:
        load_credentials(str(f))
    assert str(err.value) == (f"credentials file {f} is readable by group or others "
                              f"(mode 0640); run chmod 600 {f}")
    with pytest.raises(UsageError) as err:
        load_credentials(str(tmp_path / "none"))
    assert str(err.value) == f"credentials file {tmp_path / 'none'}: no such file"


def test_credentials_file_checked_on_what_is_read(tmp_path):
    """Symbolic links, other users' files, FIFOs and oversized files are refused."""
    f = tmp_path / "cred"
    f.write_text("username=alice\npassword=pw\n")
    f.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(f)
    with pytest.raises(UsageError) as err:
        load_credentials(str(link))
    assert str(err.value) == f"credentials file {link} is a symbolic link; name the file itself"
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(f, 65534, -1)
        with pytest.raises(UsageError) as err:
            load_credentials(str(f))
        assert str(err.value) == (f"credentials file {f} belongs to uid 65534, not to you "
                                  f"(uid 0) or root")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UsageError) as err:
        load_credentials(str(fifo))  # refused without waiting for a writer
    assert str(err.value) == f"credentials file {fifo} is not a regular file"
    big = tmp_path / "big"
    big.write_bytes(b"#" * (64 * 1024 + 1))
    big.chmod(0o600)
    with pytest.raises(UsageError) as err:
        load_credentials(str(big))
    assert str(err.value) == f"credentials file {big} is larger than 65536 bytes"


def test_environment_like_mount_cifs(monkeypatch):
    monkeypatch.setenv("USER", "carol%secret")
    monkeypatch.delenv("PASSWD", raising=False)
    c = Options().resolved_credentials()
    assert (c.username, c.password) == ("carol", "secret")
    monkeypatch.setenv("USER", "dave")
    monkeypatch.setenv("PASSWD", "pw")
    c = Options().resolved_credentials()
    assert (c.username, c.password) == ("dave", "pw")
    c = parse_options("username=CORP/erin").resolved_credentials()
    assert (c.domain, c.username) == ("CORP", "erin")
    assert os.environ["USER"] == "dave"


def test_vfs_flags_kept_in_order_and_split_for_libfuse():
    from quicfs.fs import mountflags

    o = parse_options("noexec,relatime,exec,nosuid,nodiratime,nosubtype,ro")
    assert o.vfs == ("noexec", "relatime", "exec", "nosuid", "nodiratime")
    assert not o.subtype and o.ro
    # The last of a flag and its opposite wins; a new mount is nosuid,nodev unless told
    # otherwise, root's too (setuid bits and device nodes come from EAs anyone may set).
    assert mountflags.resolve(o.vfs) == ["exec", "relatime", "nosuid", "nodiratime",
                                         "nodev"]
    assert mountflags.resolve(o.vfs, defaults=False) == ["exec", "relatime", "nosuid",
                                                         "nodiratime"]
    at_mount, later = mountflags.split(o.vfs)
    assert at_mount == {"exec", "nosuid", "nodev"} and later == ["relatime", "nodiratime"]
    # mount(8) drops suid and dev before it calls a helper: allow_suid, allow_dev pass.
    trusted = parse_options("allow_suid,allow_dev")
    assert trusted.vfs == ("allow_suid", "allow_dev")
    assert mountflags.trusts(trusted.vfs) == (True, True)
    assert mountflags.split(trusted.vfs)[0] == {"suid", "dev"}
    # An explicit nosuid or nodev wins over them wherever it stands: mount(8) puts its
    # own flags first (`mount -o nosuid` of an fstab entry with allow_suid: generic/128).
    for text in ("nosuid,allow_suid,allow_dev", "allow_suid,allow_dev,nosuid"):
        vfs = parse_options(text).vfs
        assert mountflags.trusts(vfs) == (False, True), text
        assert mountflags.split(vfs)[0] == {"nosuid", "dev"}, text
    assert mountflags.trusts(parse_options("nodev,allow_dev,suid").vfs) == (True, False)
    # suid itself and nosuid: the last one given, as before.
    assert mountflags.trusts(("nosuid", "suid")) == (True, False)
    assert mountflags.trusts(()) == (False, False)
    assert mountflags.trusts(("suid", "dev", "nosuid")) == (False, True)
    with pytest.raises(UsageError) as err:
        parse_options("noexec=1")
    assert str(err.value) == "option noexec takes no value"
