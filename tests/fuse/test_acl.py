"""Mount option ``metadata``, part two: POSIX ACLs (kept in EAs, checked by the kernel,
the mode kept in step, default ACLs handed down) and trusted.* xattrs, with real Samba
and real mounts; another user is played by uid 65534 (setpriv)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import NOBODY, as_nobody


def facl(*args: str) -> str:
    """getfacl/setfacl's output; a failure fails the test."""
    return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout


def acl_of(path: Path) -> list[str]:
    return facl("getfacl", "-acpnE", str(path)).split()


@pytest.fixture
def umask0() -> Iterator[None]:
    """No umask: what a new file gets is the default ACL's doing alone (the kernel takes
    the umask off before quicfs sees the mode; FUSE_DONT_MASK is not pyfuse3's)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_an_access_acl_is_checked_kept_and_removed(meta) -> None:
    mnt, server_dir, mount = meta
    f = mnt / "shared"
    f.write_bytes(b"for root and nobody\n")
    os.chmod(f, 0o600)
    assert as_nobody("cat", str(f)).returncode == 1
    facl("setfacl", "-m", f"u:{NOBODY}:r", str(f))
    # The mask (r) is the group bits now, as on any Linux file system.
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    assert acl_of(f) == ["user::rw-", f"user:{NOBODY}:r--", "group::---", "mask::r--",
                         "other::---"]
    assert as_nobody("cat", str(f)).stdout == "for root and nobody\n"
    r = as_nobody("sh", "-c", f"echo x >> {f}")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # On the server: an EA of ours, hidden from the mount's user.* xattrs.
    assert os.getxattr(server_dir / "shared", "user.$system.posix_acl_access") == \
        os.getxattr(f, "system.posix_acl_access")
    assert os.listxattr(f) == ["system.posix_acl_access"]
    mount.__exit__()
    with mount:
        assert acl_of(f) == ["user::rw-", f"user:{NOBODY}:r--", "group::---", "mask::r--",
                             "other::---"]
        assert as_nobody("cat", str(f)).stdout == "for root and nobody\n"
        facl("setfacl", "-b", str(f))
        assert acl_of(f) == ["user::rw-", "group::---", "other::---"]
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
        assert as_nobody("cat", str(f)).returncode == 1
        assert "user.$system.posix_acl_access" not in os.listxattr(server_dir / "shared")


def test_chmod_moves_the_mask(meta) -> None:
    mnt, _, _ = meta
    f = mnt / "f"
    f.write_bytes(b"data\n")
    facl("setfacl", "-m", f"u:{NOBODY}:rw,o::-", str(f))
    assert as_nobody("cat", str(f)).stdout == "data\n"
    os.chmod(f, 0o600)
    # The named entry stays, cut to nothing by the mask.
    assert acl_of(f) == ["user::rw-", f"user:{NOBODY}:rw-", "group::r--", "mask::---",
                         "other::---"]
    assert as_nobody("cat", str(f)).returncode == 1
    os.chmod(f, 0o664)
    assert acl_of(f) == ["user::rw-", f"user:{NOBODY}:rw-", "group::r--", "mask::rw-",
                         "other::r--"]
    assert as_nobody("sh", "-c", f"echo more >> {f}").returncode == 0
    assert f.read_bytes() == b"data\nmore\n"


def test_a_default_acl_is_handed_down(meta, umask0) -> None:
    mnt, _, _ = meta
    d = mnt / "d"
    d.mkdir(mode=0o755)
    facl("setfacl", "-d", "-m", f"u:{NOBODY}:rwx,g::r-x,o::-", str(d))
    f = d / "new"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o640)
    os.close(fd)
    # Cut down to the mode asked for (0640): the mask takes the group bits.
    assert acl_of(f) == ["user::rw-", f"user:{NOBODY}:rwx", "group::r-x", "mask::r--",
                         "other::---"]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    sub = d / "sub"
    sub.mkdir(mode=0o777)
    assert acl_of(sub) == ["user::rwx", f"user:{NOBODY}:rwx", "group::r-x", "mask::rwx",
                           "other::---"]
    assert facl("getfacl", "-dcpnE", str(sub)).split() == [
        "user::rwx", f"user:{NOBODY}:rwx", "group::r-x", "mask::rwx", "other::---"]
    # nobody may write in it (its entry), as the kernel checks through the ACL.
    assert as_nobody("touch", str(sub / "by-nobody")).returncode == 0
    assert os.stat(sub / "by-nobody").st_uid == NOBODY
    # A directory without a default ACL hands nothing down.
    plain = mnt / "plain"
    plain.mkdir(mode=0o750)
    (plain / "x").write_bytes(b"")
    assert os.listxattr(plain / "x") == []


def test_trusted_xattrs_are_root_only(meta) -> None:
    mnt, server_dir, mount = meta
    f = mnt / "t"
    f.write_bytes(b"")
    os.chmod(f, 0o666)
    os.setxattr(f, "trusted.quicfs", b"kept")
    os.setxattr(f, "user.plain", b"visible")
    assert sorted(os.listxattr(f)) == ["trusted.quicfs", "user.plain"]
    assert os.getxattr(server_dir / "t", "user.$trusted.quicfs") == b"kept"
    # Another user sees neither the name nor the value, and cannot set one.
    r = as_nobody("getfattr", "-d", "-m", "-", str(f))
    assert "trusted.quicfs" not in r.stdout and 'user.plain="visible"' in r.stdout
    r = as_nobody("setfattr", "-n", "trusted.x", "-v", "y", str(f))
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.$trusted.quicfs", b"forged")
    assert e.value.errno == errno.EPERM
    mount.__exit__()
    with mount:
        assert os.getxattr(f, "trusted.quicfs") == b"kept"
        os.removexattr(f, "trusted.quicfs")
        with pytest.raises(OSError) as e:
            os.getxattr(f, "trusted.quicfs")
        assert e.value.errno == errno.ENODATA
