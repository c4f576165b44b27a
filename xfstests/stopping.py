"""How xfstests/run stops on SIGINT (Ctrl-C) or SIGTERM: the signal becomes ``Stopped``,
raised wherever the run is, so each ``finally`` on the way out undoes what it set up
(./check's session, the mounts, the gateway and smbd, the shares' image); then
``end_descendants`` ends whatever the run started that is still there.

By ancestry, not by process group: xfstests runs programs through `su`, which gives them a
session of their own, and a quicfs mount detaches its serving process. The runner makes
itself a child subreaper, so such processes, once their parents are gone, are re-parented
to it rather than to init, and stay its descendants.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Collection, Iterable
from contextlib import suppress
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Between SIGTERM and SIGKILL: a mount's process sends what close(2)s left behind first.
GRACE_SECONDS = 10.0
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class Stopped(BaseException):
    """A BaseException, as KeyboardInterrupt is: no ``except Exception`` on the way out
    swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as shells report


_stop: Stopped | None = None


def stopped() -> Stopped | None:
    """The stop under way, if a signal came."""
    return _stop


def stop_on_signals() -> None:
    """From here on, the first SIGINT or SIGTERM raises Stopped; orphans come to us."""

    def handler(signum: int, frame: FrameType | None) -> None:
        global _stop
        # One stop: a second Ctrl-C must not cut the clean-up short.
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop = Stopped(signum)
        raise _stop

    for sig in SIGNALS:
        signal.signal(sig, handler)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent, session) of ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The name in parentheses may hold spaces and parentheses itself.
    state, ppid, _pgrp, session = data[data.rindex(b")") + 2:].split()[:4]
    return state.decode(), int(ppid), int(session)


def descendants() -> dict[int, int]:
    """This process's descendants: pid -> session."""
    children: dict[int, list[int]] = {}
    sessions: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            children.setdefault(stat[1], []).append(int(name))
            sessions[int(name)] = stat[2]
    found: dict[int, int] = {}
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in sessions and child not in found:
                found[child] = sessions[child]
                todo.append(child)
    return found


def reap(keep: Collection[int]) -> None:
    """Reap this process's zombie children but those in ``keep``: orphans re-parented here
    (the process of each mount a test made and unmade) would pile up over a run."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in keep:
            stat = _stat(int(name))
            if stat is not None and stat[0] == "Z" and stat[1] == me:
                with suppress(ChildProcessError):
                    os.waitpid(int(name), os.WNOHANG)


def _alive(pid: int) -> bool:
    # A zombie is dead; reaped here when it is ours (all orphans are: subreaper).
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def end(pids: Iterable[int], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    left = set(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if _alive(pid)}
            time.sleep(0.05)
        if not left:
            return


def end_descendants(*, session: int | None = None, keep_sessions: Collection[int] = ()
                    ) -> None:
    """End this process's descendants: those in ``session`` if given, all but those in
    ``keep_sessions`` otherwise."""
    for _ in range(3):  # an ended process's children, or a last fork, in another round
        pids = [pid for pid, sid in descendants().items()
                if (sid == session if session is not None else sid not in keep_sessions)]
        if not pids:
            return
        end(pids)
