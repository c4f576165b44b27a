"""Shared fixtures: a real Samba smbd per test session (tests/support/samba.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.samba import SambaError, SambaServer


def _start(**kwargs: object) -> SambaServer:
    root = Path(tempfile.mkdtemp(prefix="quicfs-smbd-"))
    server = SambaServer(root, **kwargs)  # type: ignore[arg-type]
    try:
        return server.start()
    except SambaError as exc:
        pytest.fail(f"cannot start smbd: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    server = _start()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def samba_factory() -> Iterator[Callable[..., SambaServer]]:
    """Start extra servers with other [global] settings; all stop after the test."""
    started: list[SambaServer] = []

    def make(**kwargs: object) -> SambaServer:
        server = _start(**kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__(None, None, None)
