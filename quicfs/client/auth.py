"""SPNEGO through pyspnego: NTLMv2, or Kerberos where a ticket exists (MS-SMB2 3.2.4.2.3).

The only module that imports spnego, and only when first asked (``preload``, or the
first login): it costs ~0.1 s, which a mount spends while its handshake is under way.
A step may block on a KDC, so callers run it in a thread.
"""

from __future__ import annotations

from quicfs.errors import UsageError


def preload() -> None:
    """Import pyspnego now (in any thread), so the first login does not wait for it."""
    import spnego
    import spnego.exceptions  # noqa: F401


class AuthError(UsageError):
    """Local authentication failed before the server was asked (no credentials, no ticket)."""


class Authenticator:
    def __init__(self, *, username: str | None, password: str | None, domain: str | None,
                 server: str) -> None:
        self.username = username or ""
        self.domain = domain or ""
        user = username
        if user and domain and "\\" not in user and "@" not in user:
            user = f"{domain}\\{user}"
        # With a password NTLM is certain to work against a standalone server; Negotiate
        # would try Kerberos first, which needs a KDC. Without one, Negotiate may find a
        # Kerberos ticket in the user's cache.
        protocol = "ntlm" if password is not None else "negotiate"
        import spnego
        import spnego.exceptions

        try:
            self._ctx = spnego.client(
                user, password, hostname=server, service="cifs", protocol=protocol
            )
        except spnego.exceptions.SpnegoError as exc:
            raise AuthError(f"cannot set up authentication: {_first_line(exc)}") from None

    def step(self, token: bytes | None) -> bytes | None:
        import spnego.exceptions

        try:
            return self._ctx.step(token or None)
        except spnego.exceptions.SpnegoError as exc:
            raise AuthError(f"authentication failed: {_first_line(exc)}") from None
        except Exception as exc:
            # The token is the server's: pyspnego parses it with struct and dict lookups, so
            # a cut-short or malformed one (a broken or hostile server) surfaces as
            # struct.error, KeyError, IndexError, ValueError. Whatever it is, this login
            # failed, and the user is owed one line saying so, not a traceback.
            raise AuthError("authentication failed: malformed security token from the "
                            f"server ({type(exc).__name__}: {_first_line(exc)})") from None

    @property
    def complete(self) -> bool:
        return bool(self._ctx.complete)

    @property
    def session_key(self) -> bytes:
        return bytes(self._ctx.session_key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
