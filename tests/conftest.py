"""Shared fixtures: a real Samba smbd per test session (tests/support/samba.py), and the
order tests run in under pytest-xdist (``make test`` runs ``-n 3``): tests marked
``quiet`` (they time a window) run after the others, beside quiet ones only; tests marked
``serial`` (they bound CPU or memory, or read every process) run last, each alone.
Without xdist every test runs alone anyway and the markers do nothing."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.gateway import GatewayError, GatewayProcess
from tests.support.samba import SambaError, SambaServer
from tools.localdc import DCError, DomainController, provision


def start_samba(**kwargs: object) -> SambaServer:
    """A private smbd in a fresh directory under /tmp (its share user must reach it);
    the test fails, never skips, if it cannot start. ``__exit__`` stops it and removes
    its files."""
    root = Path(tempfile.mkdtemp(prefix="quicfs-smbd-"))
    server = SambaServer(root, **kwargs)  # type: ignore[arg-type]
    try:
        return server.start()
    except SambaError as exc:
        pytest.fail(f"cannot start smbd: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    server = start_samba()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def samba_factory() -> Iterator[Callable[..., SambaServer]]:
    """Start extra servers with other [global] settings; all stop after the test."""
    started: list[SambaServer] = []

    def make(**kwargs: object) -> SambaServer:
        server = start_samba(**kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def gateway(samba: SambaServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    """`quicfs gateway` on a free UDP port in front of the session's smbd."""
    yield from running_gateway(tmp_path_factory.mktemp("gateway"), samba.port)


def running_gateway(root: Path, backend_port: int, extra_args: Sequence[str] = (),
                    backend_host: str = "127.0.0.1") -> Iterator[GatewayProcess]:
    """The body of a gateway fixture: started (or the test fails), stopped after."""
    gw = GatewayProcess(root, backend_port, extra_args=extra_args, backend_host=backend_host)
    try:
        gw.start()
    except GatewayError as exc:
        pytest.fail(f"cannot start the gateway: {exc}", pytrace=False)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(autouse=True)
def _private_ticket_cache(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Session tickets go to a per-run cache, not the user's."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


# ============================================================================ serial tests
#: How a test may share the machine under xdist, by its marker: ``quiet`` tests time a
#: window (actimeo, a timeout) and run beside other quiet ones only; ``serial`` tests
#: (CPU, memory, every process's state) run with no test beside them.
KINDS = ("ordinary", "quiet", "serial")


def kind_of(item: pytest.Item) -> str:
    return next((k for k in reversed(KINDS) if item.get_closest_marker(k)), "ordinary")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, quiet ones after the ordinary and serial ones last (a stable
    sort: the rest keep their order, and with it the grouping of tests around their
    module's fixtures). Under xdist a test that takes tens of seconds, handed out near
    the end, would end the run alone on one worker; the others are handed out by kind,
    so the workers change kinds at the gate below a few times, not before every test."""
    items.sort(key=lambda item: (KINDS.index(kind_of(item)),
                                 item.get_closest_marker("slow") is None))


def _may_enter(kind: str, running: set[str], waiting: set[str]) -> bool:
    """Whether a test of ``kind`` may start beside tests of the kinds ``running``, while
    other workers wait to start tests of the kinds ``waiting``. A test waits for the
    kinds handed out before its own: xdist gives a worker its next test before it runs
    the one it has, so an ordinary test may reach a worker after the first quiet one
    reached another, and it must not wait out the quiet ones there."""
    beside = {"ordinary": {"ordinary"}, "quiet": {"quiet"}, "serial": set()}[kind]
    return running <= beside and not waiting & set(KINDS[:KINDS.index(kind)])


@contextlib.contextmanager
def _flock(path: Path, how: int) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, how)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _gate(workers: Path | None, kind: str) -> Iterator[None]:
    """Between the xdist workers of one run: a table of which worker runs or waits to run
    which kind of test, in the run's temporary directory (which holds each worker's),
    read and written under a lock. A worker that died is forgotten, so it blocks no one."""
    if workers is None:  # not under xdist: each test runs alone already
        yield
        return
    lock, table = workers / "gate.lock", workers / "gate.json"
    me = str(os.getpid())

    def update(change: Callable[[dict[str, dict[str, str]]], bool]) -> bool:
        with _flock(lock, fcntl.LOCK_EX):
            try:
                state = json.loads(table.read_text())
            except (FileNotFoundError, ValueError):
                state = {"running": {}, "waiting": {}}
            for pids in state.values():
                for pid in [p for p in pids if p != me and not _alive(p)]:
                    del pids[pid]
            done = change(state)
            table.write_text(json.dumps(state))
            return done

    def enter(state: dict[str, dict[str, str]]) -> bool:
        others = {p: k for p, k in state["waiting"].items() if p != me}
        if _may_enter(kind, set(state["running"].values()), set(others.values())):
            state["waiting"].pop(me, None)
            state["running"][me] = kind
            return True
        state["waiting"][me] = kind
        return False

    while not update(enter):
        time.sleep(0.05)
    try:
        yield
    finally:
        update(lambda state: bool(state["running"].pop(me, None)))


@pytest.fixture
def sbin_helpers_lock() -> Iterator[None]:
    """Held by a test while it puts mount(8)'s helpers in /sbin and takes them away
    again: one such test at a time, in whichever worker (or run) it is."""
    with _flock(Path(tempfile.gettempdir()) / "quicfs-test-sbin-helpers.lock",
                fcntl.LOCK_EX):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Iterator[None]:
    """The whole of a test, with the set-up and tear-down of the fixtures it brings up
    or is the last to use, inside the gate."""
    # An xdist worker's basetemp is a directory of its own in the run's.
    worker_temp = item.config.option.basetemp if os.environ.get("PYTEST_XDIST_WORKER") else None
    with _gate(Path(worker_temp).parent if worker_temp else None, kind_of(item)):
        yield


# ============================================================================ Kerberos
@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DomainController]:
    """A Samba AD domain controller, realm QUICFS.TEST, on a loopback address of its own
    (tools/localdc.py): the KDC and the SMB server of shares ``kerb`` and ``kerbsealed``.
    Provisioned once per run (the xdist workers share the template), started once per
    worker that asks. ``samba_dc.kinit(cache)`` puts a ticket in a cache of the test's,
    ``samba_dc.env(cache)`` is a client's environment for it."""
    base = tmp_path_factory.getbasetemp()
    run = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    # Under /tmp, not in pytest's root-only directories: the domain's users reach the
    # shares with the uids winbind gives them.
    dc = DomainController(Path(tempfile.mkdtemp(prefix="quicfs-dc-")),
                          run / "samba-dc-template")
    try:
        provision(dc.template)
        dc.start()
    except DCError as exc:
        pytest.fail(f"cannot start the domain controller: {exc}", pytrace=False)
    try:
        yield dc
    finally:
        dc.close()


@pytest.fixture(scope="session")
def dc_gateway(samba_dc: DomainController, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[GatewayProcess]:
    """`quicfs gateway` in front of the DC's smbd (on an address of its own), on
    127.0.0.1 (the DC has the service principal cifs/127.0.0.1)."""
    yield from running_gateway(tmp_path_factory.mktemp("dc-gateway"), samba_dc.port,
                               backend_host=samba_dc.host)
