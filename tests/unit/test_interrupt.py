"""A wait for a lost server ends when its caller gets a signal (client/interrupt.py),
checked against real processes' /proc status."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import trio

from quicfs.client.interrupt import wait_interruptibly
from quicfs.errors import Interrupted
from quicfs.fs.caller import calling, signal_pending


@pytest.fixture
def stopped() -> Iterator[subprocess.Popen[bytes]]:
    """A stopped process: signals sent to it stay pending until it continues."""
    proc = subprocess.Popen(["sleep", "60"])
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while "T (stopped)" not in open(f"/proc/{proc.pid}/status").read():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_pending_signals_are_seen_and_harmless_ones_are_not(stopped) -> None:
    assert not signal_pending(stopped.pid)
    os.kill(stopped.pid, signal.SIGWINCH)  # a terminal resized: no reason to give up
    time.sleep(0.05)
    assert not signal_pending(stopped.pid)
    os.kill(stopped.pid, signal.SIGUSR1)
    time.sleep(0.05)
    assert signal_pending(stopped.pid)


def test_a_blocked_signal_is_not_one(tmp_path) -> None:
    child = subprocess.Popen(
        ["python3", "-c", "import signal, os, time; "
         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); "
         "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        os.kill(child.pid, signal.SIGUSR1)
        time.sleep(0.05)
        assert not signal_pending(child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_has_none() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not signal_pending(proc.pid)


@pytest.mark.quiet  # bounds the wait: < 1 s
async def test_the_wait_of_a_signalled_caller_ends(stopped) -> None:
    with calling(stopped.pid):
        with trio.move_on_after(0.5):
            await wait_interruptibly(trio.Event().wait)  # (never set: waits for ever)
        os.kill(stopped.pid, signal.SIGUSR1)
        start = trio.current_time()
        with pytest.raises(Interrupted):
            await wait_interruptibly(trio.Event().wait)
        assert trio.current_time() - start < 1


async def test_only_the_callers_own_task_is_interrupted(stopped) -> None:
    """A task the call started (background work) inherits the context, not the caller:
    its wait goes on."""
    os.kill(stopped.pid, signal.SIGUSR1)
    done = trio.Event()
    finished = []

    async def background() -> None:
        await wait_interruptibly(done.wait)
        finished.append(True)

    with calling(stopped.pid):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background)
            await trio.sleep(0.5)
            done.set()
    assert finished == [True]
    # Without a caller named, nothing interrupts.
    await wait_interruptibly(partial_sleep)


async def partial_sleep() -> None:
    await trio.sleep(0.01)
