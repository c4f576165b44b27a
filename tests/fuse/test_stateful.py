"""Random operations against the mount and a local reference directory, compared after
every step (hypothesis stateful testing)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

NAMES = st.sampled_from(["a", "b", "c", "d/a", "d/b", "e/f/g"])
DATA = st.binary(max_size=70_000)


def apply(root: Path, op, *args):
    """Run one operation on one side; return the outcome (errno or a value)."""
    try:
        return ("ok", op(root, *args))
    except OSError as exc:
        return ("err", exc.errno)


def op_write(root, name, data):
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def op_append(root, name, data):
    with open(root / name, "ab") as f:
        f.write(data)


def op_truncate(root, name, size):
    os.truncate(root / name, size)


def op_read(root, name):
    return (root / name).read_bytes()


def op_unlink(root, name):
    os.unlink(root / name)


def op_rename(root, src, dst):
    (root / dst).parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / src, root / dst)


def op_rmdir(root, name):
    os.rmdir(root / name.split("/")[0])


def snapshot(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d)) + "/"] = None
        for f in filenames:
            out[os.path.normpath(os.path.join(rel, f))] = Path(dirpath, f).read_bytes()
    return out


@pytest.mark.slow
def test_random_operations_match_local(mounted, tmp_path):
    local_root = tmp_path / "ref"

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            for root in (local_root, mounted / "sm"):
                if root.exists():
                    shutil.rmtree(root)
                root.mkdir()
            self.local, self.remote = local_root, mounted / "sm"

        def both(self, op, *args):
            a = apply(self.local, op, *args)
            b = apply(self.remote, op, *args)
            assert a == b, (op.__name__, args, a, b)

        @rule(name=NAMES, data=DATA)
        def write(self, name, data):
            self.both(op_write, name, data)

        @rule(name=NAMES, data=DATA)
        def append(self, name, data):
            self.both(op_append, name, data)

        @rule(name=NAMES, size=st.integers(0, 100_000))
        def truncate(self, name, size):
            self.both(op_truncate, name, size)

        @rule(name=NAMES)
        def read(self, name):
            self.both(op_read, name)

        @rule(name=NAMES)
        def unlink(self, name):
            self.both(op_unlink, name)

        @rule(src=NAMES, dst=NAMES)
        def rename(self, src, dst):
            if src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
                return
            self.both(op_rename, src, dst)

        @rule(name=NAMES)
        def rmdir(self, name):
            if "/" in name:
                self.both(op_rmdir, name)

        @invariant()
        def same_tree(self):
            assert snapshot(self.local) == snapshot(self.remote)

    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=20, stateful_step_count=30, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
    assert errno.ENOENT  # the outcomes compared above include errno values
