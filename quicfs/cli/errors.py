"""Errors to one line and an exit code: the CLI edge of the exception tree."""

from __future__ import annotations

import argparse

import trio

from quicfs.client.nursery import first_leaf
from quicfs.errors import (
    ConnectError,
    ConnectionLost,
    ProtocolError,
    QuicfsError,
    SecurityError,
    SMBError,
    UsageError,
)
from quicfs.smb2.status import Status, status_message

EXIT_FAILURE = 1
EXIT_USAGE = 2


def describe(exc: BaseException, args: argparse.Namespace | None = None) -> tuple[str, int]:
    """(message, exit code) for an error that ended a command."""
    if isinstance(exc, BaseExceptionGroup):
        exc = first_leaf(exc)
    url = getattr(args, "url", None) or ""
    user = _user(args)
    if isinstance(exc, SMBError):
        status = exc.status
        if status in (Status.LOGON_FAILURE, Status.WRONG_PASSWORD, Status.NO_SUCH_USER):
            return f"logon failure for user '{user}' on {_server(url)}: wrong user name or " \
                   "password", EXIT_FAILURE
        if status == Status.BAD_NETWORK_NAME:
            return f"{_share(url)}: no such share on the server", EXIT_FAILURE
        where = url or "server"
        if str(exc) != exc.name:  # a message of its own
            return f"{where}: {exc}", EXIT_FAILURE
        return f"{where}: {status_message(status)} ({exc.name})", EXIT_FAILURE
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ConnectError | ConnectionLost | SecurityError):
        return str(exc), EXIT_FAILURE
    if isinstance(exc, ProtocolError):
        return f"protocol error from server: {exc}", EXIT_FAILURE
    if isinstance(exc, QuicfsError):
        return str(exc), EXIT_FAILURE
    if isinstance(exc, trio.TooSlowError):
        return f"{url or 'server'}: timed out", EXIT_FAILURE
    if isinstance(exc, OSError):
        name = exc.filename or ""
        return (f"{name}: {exc.strerror}" if name else str(exc.strerror or exc)), EXIT_FAILURE
    return f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILURE


def _user(args: argparse.Namespace | None) -> str:
    try:
        from quicfs.options import parse_options

        creds = parse_options(getattr(args, "options", "") or "").resolved_credentials()
        return creds.username or ""
    except QuicfsError:
        return ""


def _server(url: str) -> str:
    try:
        from quicfs.url import parse_url

        u = parse_url(url)
        return f"//{u.host}" + (f":{u.port}" if u.port else "")
    except QuicfsError:
        return url


def _share(url: str) -> str:
    try:
        from quicfs.url import parse_url

        u = parse_url(url)
        return f"//{u.host}" + (f":{u.port}" if u.port else "") + f"/{u.share}"
    except QuicfsError:
        return url
