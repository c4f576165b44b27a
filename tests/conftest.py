"""Shared fixtures: a real Samba smbd per test session (tests/support/samba.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.gateway import GatewayError, GatewayProcess
from tests.support.samba import SambaError, SambaServer


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


def running_gateway(root: Path, backend_port: int, extra_args: Sequence[str] = ()
                    ) -> Iterator[GatewayProcess]:
    """The body of a gateway fixture: started (or the test fails), stopped after."""
    gw = GatewayProcess(root, backend_port, extra_args=extra_args)
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
