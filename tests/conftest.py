"""Shared fixtures: a real Samba smbd per test session (tests/support/samba.py), and the
order tests run in under pytest-xdist (``make test`` runs ``-n 2``): tests marked
``serial`` (they bound time, CPU or memory) run last, each with no other test beside it.
Without xdist every test runs alone anyway and the marker does nothing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
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
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first and serial tests last (a stable sort: the rest keep their order,
    and with it the grouping of tests around their module's fixtures). Under xdist a
    test that takes tens of seconds, handed out near the end, would end the run alone
    on one worker; serial ones are handed out last, so the workers meet at the gate
    below once, not before every serial test."""
    items.sort(key=lambda item: (item.get_closest_marker("serial") is not None,
                                 item.get_closest_marker("slow") is None))


@contextlib.contextmanager
def _flock(path: Path, how: int) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, how)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _gate(workers: Path | None, serial: bool) -> Iterator[None]:
    """Between the xdist workers of one run (lock files in the run's temporary
    directory, which holds each worker's): a serial test holds ``run`` exclusively, any
    other holds it shared. The ``gate`` before it gives a serial test its turn as soon as
    the tests now running end: it holds the gate while it waits and runs, and the other
    workers wait there before their next test."""
    if workers is None:  # not under xdist: each test runs alone already
        yield
        return
    gate, run = workers / "serial.gate", workers / "serial.run"
    if serial:
        with _flock(gate, fcntl.LOCK_EX), _flock(run, fcntl.LOCK_EX):
            yield
    else:
        with _flock(gate, fcntl.LOCK_EX):
            held = open(run, "a")
            fcntl.flock(held, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()


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
    with _gate(Path(worker_temp).parent if worker_temp else None,
               item.get_closest_marker("serial") is not None):
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
