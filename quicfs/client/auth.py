"""SPNEGO through pyspnego: NTLMv2 with a password, Kerberos from the user's ticket cache
without one (MS-SMB2 3.2.4.2.3).

The only module that imports spnego (and gssapi and krb5, which pyspnego's Kerberos
runs on), and only when first asked (``preload``, or the first login): it costs ~0.1 s,
which a mount spends while its handshake is under way. A step may block on a KDC, so
callers run it in a thread.

Without a password, the ticket is looked at before anything is sent: no ticket, one for
another principal, or an expired one is said in one line here, where it is known, rather
than as the NTLM fallback's complaint that pyspnego's Negotiate would report instead.
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
        # With a password NTLM is certain to work against a standalone server; Negotiate
        # would try Kerberos first, which needs a KDC. Without one, Negotiate takes the
        # Kerberos ticket checked here.
        if password is not None:
            user = username
            if user and domain and "\\" not in user and "@" not in user:
                user = f"{domain}\\{user}"
            protocol = "ntlm"
        else:
            user = kerberos_principal(username, domain)
            check_ticket(user)
            protocol = "negotiate"
        self.kerberos = password is None
        self.service = f"cifs/{server}"
        import spnego
        import spnego.exceptions

        try:
            self._ctx = spnego.client(
                user, password, hostname=server, service="cifs", protocol=protocol
            )
        except spnego.exceptions.SpnegoError as exc:
            raise AuthError(f"cannot set up authentication: {_reason(exc)}") from None

    def step(self, token: bytes | None) -> bytes | None:
        import spnego.exceptions

        try:
            return self._ctx.step(token or None)
        except spnego.exceptions.SpnegoError as exc:
            if self.kerberos:
                raise AuthError(f"Kerberos login to {self.service} failed: "
                                f"{_reason(exc)}") from None
            raise AuthError(f"authentication failed: {_reason(exc)}") from None
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
        """The key the protocol gave, whole (Session.FullSessionKey: 32 bytes from an
        AES-256 Kerberos subkey); smb2/crypto.py takes the 16 bytes SMB signs with."""
        return bytes(self._ctx.session_key)


def kerberos_principal(username: str | None, domain: str | None) -> str | None:
    """The principal to find a ticket for: ``alice@REALM`` as given; ``alice`` with a DNS
    domain (``domain=example.com``) is alice@EXAMPLE.COM, an AD realm being its DNS
    domain in capitals; with a NetBIOS domain (``domain=EXAMPLE``), which names no realm,
    plain ``alice`` in krb5.conf's default realm. No user: the cache's own principal."""
    if not username:
        return None
    if "@" in username or not domain or "." not in domain:
        return username
    return f"{username}@{domain.upper()}"


def check_ticket(principal: str | None) -> None:
    """Raise AuthError saying what is wrong unless the ticket cache holds a ticket for
    ``principal`` (or, with None, any principal) that has not expired."""
    try:
        import gssapi
        import gssapi.exceptions
        import krb5
    except ImportError:
        raise AuthError("no password given, and Kerberos is not available: the Python "
                        "packages gssapi and krb5 are not installed") from None
    ctx = krb5.init_context()
    ccache = krb5.cc_default(ctx)
    where = f"{(ccache.cache_type or b'FILE').decode()}:{(ccache.name or b'').decode()}"
    try:
        holder = krb5.unparse_name_flags(ctx, krb5.cc_get_principal(ctx, ccache)).decode()
    except krb5.Krb5Error:
        holder = None
    if holder is None:
        raise AuthError(f"no password given and no Kerberos ticket in {where}: "
                        "run kinit first, or give password= or credentials=")
    krb5_mech = gssapi.OID.from_int_seq("1.2.840.113554.1.2.2")
    name = None
    if principal is not None:
        name = gssapi.Name(principal, gssapi.NameType.user).canonicalize(krb5_mech)
        principal = str(name)
    who = principal or holder
    try:
        # The lifetime is asked for because that is when an expired ticket is noticed.
        gssapi.Credentials(name=name, usage="initiate", mechs=[krb5_mech]).lifetime  # noqa: B018
    except gssapi.exceptions.ExpiredCredentialsError:
        raise AuthError(f"the Kerberos ticket for {who} in {where} has expired: "
                        f"run kinit {who} again") from None
    except gssapi.exceptions.GSSError as exc:
        if principal is not None and principal != holder:
            raise AuthError(f"no Kerberos ticket for {principal} in {where}, which holds "
                            f"{holder}'s: run kinit {principal}, or give "
                            f"username={holder}") from None
        raise AuthError(f"cannot use the Kerberos ticket for {who} in {where}: "
                        f"{_gss_reason(exc)}") from None


def _gss_reason(exc: BaseException) -> str:
    """The minor status of a GSS error (what MIT krb5 says, e.g. 'Server not found in
    Kerberos database'), else its first line."""
    text = _first_line(exc)
    if "Minor (" in text:
        text = text.split("Minor (", 1)[1].split("): ", 1)[-1]
        text = text.split(", Context: ", 1)[0]
    return text


def _reason(exc: BaseException) -> str:
    """pyspnego's message without its wrapping: 'SpnegoError (1): SpnegoError (16): ...,
    Context: ...' is cut to what happened."""
    text = _gss_reason(exc)
    while text.startswith("SpnegoError ("):
        text = text.split("): ", 1)[-1]
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
