"""xfstests/run: xfstests (or fsx and fsstress) through quicfs mounts over QUIC.

Starts a private Samba with the shares ``test`` and ``scratch`` and our QUIC gateway in
front of it (unless QUICFS_SERVER names a server), makes the users xfstests runs
programs as, points xfstests at xfstests/local.config, runs ``./check`` under a time
limit, and writes a summary to xfstests/results/. Stopped by SIGINT or SIGTERM, it
undoes all of it (stopping.py). See docs/xfstests.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
# outcomes.py and stopping.py beside this file (also when a test loads it by path), and
# tools/ above it: the checkout's, not the package's.
sys.path[:0] = [str(HERE), str(HERE.parent)]

from outcomes import classify, compare, notrun_reasons, summarize  # noqa: E402
from stopping import (  # noqa: E402
    Stopped,
    descendants,
    end_descendants,
    reap,
    stop_on_signals,
    stopped,
)

from quicfs.errors import QuicfsError  # noqa: E402
from tools.localsmb import SambaServer  # noqa: E402
from tools.mounts import mounted_under, unmount, unmount_under  # noqa: E402
from tools.servers import ServersError, start_servers, stop_state  # noqa: E402

CONFIG = HERE / "local.config"
EXCLUDE = HERE / "exclude"
#: QUICFS_XFSTESTS_RESULTS: elsewhere (a test of the runner keeps these as they are).
RESULTS = Path(os.environ.get("QUICFS_XFSTESTS_RESULTS") or HERE / "results")
HELPER = Path("/sbin/mount.fuse.quicfs")
#: The users xfstests' _require_user / _require_user_exists need.
USERS = ("fsgqa", "fsgqa2", "123456-fsgqa")
#: Samba settings that bring a share closer to what a POSIX test suite expects: names
#: that differ only in case are different files (and no directory scan per lookup), and
#: fsync reaches the disk.
SHARE_OPTIONS = {
    "case sensitive": "yes",
    "preserve case": "yes",
    "short preserve case": "yes",
    "strict sync": "yes",
    "create mask": "0777",
    "directory mask": "0777",
}


class RunError(QuicfsError):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xfstests/run",
        description="run xfstests through quicfs mounts (XFSTESTS_DIR: a built xfstests)")
    p.add_argument("--fsx", action="store_true",
                   help="run fsx (100,000 ops, plain, -c 4 and -f) and fsstress "
                        "(10,000 ops x 4 processes) instead of ./check")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="MIN",
                   help="stop ./check after this many minutes (default 60)")
    p.add_argument("--reference", action="store_true",
                   help="run the same tests through xfstests/passthrough.py (a plain "
                        "pyfuse3 passthrough of local directories) instead of quicfs: "
                        "what FUSE and pyfuse3 allow here, test by test")
    p.add_argument("--compare", action="store_true",
                   help="run nothing: list the tests the last --reference run passed "
                        "and the last quicfs run did not, with quicfs's reasons")
    p.add_argument("--keep", action="store_true",
                   help="leave the servers running, the mounts mounted and the work "
                        "directory in place afterwards (unless stopped by a signal)")
    p.add_argument("--shares-in", metavar="DIR", type=Path,
                   help="keep the local Samba's shares in DIR (default: a fresh XFS "
                        "image, loop-mounted under the work directory)")
    p.add_argument("check_args", nargs="*", metavar="ARG",
                   help="tests or ./check options (default: -g quick)")
    return p


def ensure_users() -> None:
    import pwd

    for user in USERS:
        try:
            pwd.getpwnam(user)
            continue
        except KeyError:
            pass
        proc = subprocess.run(["useradd", "-m", "-s", "/bin/bash", user],
                              capture_output=True, text=True)
        if proc.returncode not in (0, 9):
            raise RunError(f"useradd {user} failed: {proc.stderr.strip()}")


#: The XFS image the local Samba keeps its shares in (sparse: it takes what is written).
IMAGE_SIZE = "40G"


@contextmanager
def share_storage(work: Path, keep: bool) -> Iterator[Path]:
    """A fresh XFS, loop-mounted, for the local Samba's shares. The server's file system
    bounds what the tests can store: ext4 keeps one 4 KiB block of xattrs per file
    (xfstests asks for more, and each file's owner and mode are three of them), XFS
    values up to 64 KiB and any number of them; XFS is also what many Samba servers run
    on (RHEL's default)."""
    image, mnt = work / "shares.img", work / "shares"
    mnt.mkdir(parents=True, exist_ok=True)
    try:
        try:
            subprocess.run(["truncate", "-s", IMAGE_SIZE, str(image)], check=True)
            for cmd in (["mkfs.xfs", "-q", "-f", str(image)],
                        ["mount", "-o", "loop", str(image), str(mnt)]):
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RunError(f"{' '.join(cmd[:2])} failed: "
                                   f"{(proc.stderr or proc.stdout).strip()} (or give "
                                   "--shares-in DIR)")
        except (OSError, subprocess.CalledProcessError) as exc:
            raise RunError(f"cannot make the shares' XFS image {image}: {exc} "
                           "(or give --shares-in DIR)") from None
        yield mnt
    finally:
        # Also when making it was cut short: the loop device goes with the unmount.
        if not keep or stopped():
            unmount(mnt)
            image.unlink(missing_ok=True)


@contextmanager
def servers(work: Path, keep: bool, shares_in: Path | None) -> Iterator[dict[str, str]]:
    """The QUICFS_* environment of local.config: a server named by the caller's
    environment, or a local Samba + gateway started here."""
    if os.environ.get("QUICFS_SERVER"):
        yield {}
        return
    with storage(work, keep, shares_in) as where:
        where.chmod(0o755)
        samba = SambaServer(Path(tempfile.mkdtemp(prefix="smb-", dir=where)),
                            shares=("test", "scratch"), share_options=SHARE_OPTIONS)
        with _local_servers(work, samba, keep) as env:
            yield env


def storage(work: Path, keep: bool, shares_in: Path | None
            ) -> AbstractContextManager[Path]:
    """Where the shares (or the reference's directories) live: --shares-in DIR, or a
    fresh XFS image."""
    return share_storage(work, keep) if shares_in is None else _given(shares_in)


@contextmanager
def _given(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        raise RunError(f"--shares-in {path}: not a directory")
    yield path


@contextmanager
def _local_servers(work: Path, samba: SambaServer, keep: bool
                   ) -> Iterator[dict[str, str]]:
    try:
        local = start_servers(work, samba)
    except ServersError as exc:
        raise RunError(str(exc)) from None
    try:
        yield {"QUICFS_SERVER": f"127.0.0.1:{local.port}",
               "QUICFS_OPTIONS": f"fingerprint={local.fingerprint}",
               "QUICFS_CRED": str(local.credentials)}
    finally:
        if keep and not stopped():
            print(f"servers left running: smbd {local.samba.port}/tcp, "
                  f"gateway {local.port}/udp (pids in {work}/servers)")
            (work / "servers").write_text(repr(local.state()) + "\n")
        else:
            stop_state(local.state())
            # stop_state removes it only under /tmp; --shares-in may put it elsewhere.
            shutil.rmtree(samba.root, ignore_errors=True)


# ---------------------------------------------------------------------------- reference
REFERENCE_HELPER = Path("/sbin/mount.fuse.passthrough")


@contextmanager
def reference(work: Path, keep: bool, shares_in: Path | None) -> Iterator[dict[str, str]]:
    """Two directories on the storage the shares would be on, and the passthrough's
    mount helper (installed for the run), described by a config like local.config."""
    with storage(work, keep, shares_in) as where:
        dirs = {}
        for name in ("test", "scratch"):
            dirs[name] = where / f"reference-{name}"
            subprocess.run(["rm", "-rf", str(dirs[name])], check=True)
            dirs[name].mkdir(mode=0o755)
        REFERENCE_HELPER.write_text(
            "#!/bin/sh\n# xfstests/run --reference installed this; it removes it again.\n"
            f'exec "{sys.executable}" "{HERE / "passthrough.py"}" "$@"\n')
        REFERENCE_HELPER.chmod(0o755)
        mnt = work / "reference"
        config = work / "reference.config"
        config.write_text(
            "export FSTYP=fuse\nexport FUSE_SUBTYP=.passthrough\n"
            # Not a path: umount(8) takes a directory for a mount point, not a source.
            f"export TEST_DEV=passthrough:{dirs['test']}\nexport TEST_DIR={mnt}/test\n"
            f"export SCRATCH_DEV=passthrough:{dirs['scratch']}\n"
            f"export SCRATCH_MNT={mnt}/scratch\n"
            'export TEST_FS_MOUNT_OPTS="-o allow_other"\n'
            'export MOUNT_OPTIONS="-o allow_other"\n')
        try:
            yield {"HOST_OPTIONS": str(config)}
        finally:
            if not keep or stopped():
                REFERENCE_HELPER.unlink(missing_ok=True)


def config_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment ./check runs with, and the mount points its config names."""
    env = {**os.environ, "HOST_OPTIONS": str(CONFIG), **extra}
    config = env["HOST_OPTIONS"]
    out = subprocess.run(["bash", "-c", f'. "{config}"; echo "$TEST_DIR"; '
                          'echo "$SCRATCH_MNT"; echo "$TEST_DEV"; echo "$TEST_FS_MOUNT_OPTS"; '
                          'echo "$FSTYP$FUSE_SUBTYP"'],
                         env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    env["QUICFS_TEST_DIR"], env["QUICFS_SCRATCH_MNT"] = out[0], out[1]
    env["QUICFS_TEST_DEV"], env["QUICFS_TEST_OPTS"] = out[2], out[3].removeprefix("-o ")
    env["QUICFS_TEST_TYPE"] = out[4]
    return env


# ---------------------------------------------------------------------------- ./check
def run_check(xfstests: Path, env: dict[str, str], args: Sequence[str],
              limit_min: float, is_reference: bool = False) -> int:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-reference" if is_reference else "")
    log_path = RESULTS / f"check-{stamp}.log"
    env = dict(env, RESULT_BASE=str(RESULTS / f"check-{stamp}"))
    # The reference runs every test: what it fails shows what FUSE here cannot do.
    exclude = [] if is_reference else ["-E", str(EXCLUDE)]
    cmd = ["./check", *exclude, *(args or ["-g", "quick"])]
    print(f"$ cd {xfstests} && {' '.join(cmd)}   (log: {log_path})", flush=True)
    start = time.monotonic()
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=xfstests, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        assert proc.stdout is not None
        deadline = start + limit_min * 60

        def stop(*_: object) -> None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

        old = signal.signal(signal.SIGALRM, lambda *_: stop())
        signal.setitimer(signal.ITIMER_REAL, max(1.0, deadline - time.monotonic()))
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                log.flush()
                reap(keep={proc.pid})
            proc.wait()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            # Stopped, or done: nothing of ./check's session outlives it (the test's
            # programs make process groups of their own). SIGTERM first: its trap wraps up.
            end_descendants(session=proc.pid)
        timed_out = time.monotonic() >= deadline
    log = log_path.read_text()
    results = classify(log)
    summary = summarize(results, (time.monotonic() - start) / 60, timed_out, cmd[1:],
                        "the passthrough reference" if is_reference else "quicfs over QUIC",
                        notrun_reasons(log))
    latest = RESULTS / ("summary-reference.txt" if is_reference else "summary.txt")
    (RESULTS / f"summary-{stamp}.txt").write_text(summary)
    latest.write_text(summary)
    print("\n" + "\n".join(summary.splitlines()[:5]))
    print(f"summary: {latest}")
    failed = any(v == "failed" for v in results.values())
    return 1 if failed or timed_out or not results else 0


# ---------------------------------------------------------------------------- fsx
def run_fsx(xfstests: Path, env: dict[str, str]) -> int:
    """fsx and fsstress on the TEST share, mounted here as xfstests would."""
    mnt = Path(env["QUICFS_TEST_DIR"])
    mnt.mkdir(parents=True, exist_ok=True)
    unmount(mnt)
    subprocess.run(["mount", "-t", env["QUICFS_TEST_TYPE"], "-o", env["QUICFS_TEST_OPTS"],
                    env["QUICFS_TEST_DEV"], str(mnt)], check=True, env=env)
    work = mnt / f"fsx-{os.getpid()}"
    work.mkdir()
    runs = [
        ("fsx", [str(xfstests / "ltp/fsx"), "-q", "-N", "100000", str(work / "plain")]),
        ("fsx -c 4", [str(xfstests / "ltp/fsx"), "-q", "-N", "100000", "-c", "4",
                      str(work / "reopen")]),
        ("fsx -f", [str(xfstests / "ltp/fsx"), "-q", "-N", "100000", "-f",
                    str(work / "flush")]),
        ("fsstress", [str(xfstests / "ltp/fsstress"), "-d", str(work / "stress"),
                      "-n", "10000", "-p", "4"]),
    ]
    RESULTS.mkdir(exist_ok=True)
    lines, failed = [], False
    try:
        for name, cmd in runs:
            start = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            took = time.monotonic() - start
            ok = proc.returncode == 0
            failed |= not ok
            line = f"{name}: {'passed' if ok else f'FAILED (exit {proc.returncode})'} " \
                   f"in {took:.0f} s"
            print(line, flush=True)
            lines.append(line)
            if not ok:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
                lines += [f"    {t}" for t in tail]
                print("\n".join(tail))
    finally:
        subprocess.run(["rm", "-rf", str(work)], capture_output=True)
        unmount(mnt)
    (RESULTS / "fsx.txt").write_text(
        f"fsx and fsstress through quicfs over QUIC, {time.strftime('%Y-%m-%d %H:%M')}\n"
        + "\n".join(lines) + "\n")
    return 1 if failed else 0


def print_comparison() -> int:
    summaries = RESULTS / "summary-reference.txt", RESULTS / "summary.txt"
    missing = [str(p) for p in summaries if not p.exists()]
    if missing:
        print(f"xfstests/run: no {' and no '.join(missing)}: run xfstests/run --reference "
              "and xfstests/run first", file=sys.stderr)
        return 2
    text = compare(summaries[0].read_text(), summaries[1].read_text(), EXCLUDE.read_text())
    (RESULTS / "comparison.txt").write_text(text)
    print(text, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.compare:
        return print_comparison()
    xfstests = Path(os.environ.get("XFSTESTS_DIR", ""))
    if not os.environ.get("XFSTESTS_DIR"):
        print("xfstests/run: set XFSTESTS_DIR to a built xfstests checkout", file=sys.stderr)
        return 2
    if not (xfstests / "check").exists() or not (xfstests / "ltp" / "fsx").exists():
        print(f"xfstests/run: {xfstests} is not a built xfstests checkout (no check or "
              "ltp/fsx); build it as its README says", file=sys.stderr)
        return 2
    if not HELPER.exists():
        print(f"xfstests/run: {HELPER} is missing; run `make install` first",
              file=sys.stderr)
        return 2
    stop_on_signals()
    try:
        return run(args, xfstests)
    except Stopped as stop:  # every `finally` on its way out has run
        print(f"xfstests/run: stopped by {stop.name}; what it started is stopped, unmounted "
              "and removed", file=sys.stderr)
        return stop.exit_code


def run(args: argparse.Namespace, xfstests: Path) -> int:
    work: Path | None = None
    mounts: list[Path] = []
    try:
        base = os.environ.get("QUICFS_XFSTESTS_WORK")
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="quicfs-xfstests-", dir=base))
        work.chmod(0o755)  # the shares' Unix user walks through it to the shares
        ensure_users()
        where = reference if args.reference else servers
        with where(work, args.keep, args.shares_in) as extra:
            env = config_env(extra)
            mounts = [Path(env["QUICFS_TEST_DIR"]), Path(env["QUICFS_SCRATCH_MNT"])]
            # The servers, just started: what ends after ./check must not end them yet.
            serving = set(descendants().values())
            for path in mounts:
                unmount_under(path)
                path.mkdir(parents=True, exist_ok=True)
            try:
                if args.fsx:
                    return run_fsx(xfstests, env)
                return run_check(xfstests, env, args.check_args, args.time_limit,
                                 args.reference)
            finally:
                if not args.keep or stopped():
                    # The tests' programs outside ./check's session (`su` starts sessions
                    # of its own) first, then the mounts: their processes end with them.
                    end_descendants(keep_sessions=serving)
                    for path in mounts:
                        unmount_under(path)
    except (QuicfsError, subprocess.CalledProcessError) as exc:
        print(f"xfstests/run: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep or stopped():
            leave_nothing(work, mounts)


def leave_nothing(work: Path | None, mounts: Sequence[Path]) -> None:
    """The end of a run, finished or stopped: no process it started is left, nothing is
    mounted where it mounts, and its work directory is gone."""
    try:
        _leave_nothing(work, mounts)
    except Stopped:
        _leave_nothing(work, mounts)  # signals are ignored from now on: this one finishes
        raise


def _leave_nothing(work: Path | None, mounts: Sequence[Path]) -> None:
    end_descendants()
    for path in [*mounts, *([work] if work else [])]:
        unmount_under(path)
    if work is not None and not mounted_under(work):
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
