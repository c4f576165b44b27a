"""What an SMB server says of itself in answer to a NEGOTIATE (MS-SMB2 2.2.3, 2.2.4),
with no SESSION_SETUP: nobody logs in.

One NEGOTIATE offers every dialect and, for 3.1.1, every cipher, signing algorithm and
compression algorithm, the transport capabilities context (2.2.3.1.5) and Samba's POSIX
extensions: the answer is what the server would give quicfs. Then, each on a connection of
its own (a connection negotiates once, 3.3.5.3.1), a NEGOTIATE per lower dialect and per
cipher and signing algorithm not chosen, all at once: what the server accepts at all
(:func:`accepted`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import zip_longest

import trio

from quicfs.client.connection import CIPHERS, SIGNING_ALGORITHMS
from quicfs.errors import ConnectError, ConnectionLost, ProtocolError, QuicfsError, SMBError
from quicfs.probe.der import spnego_mechanisms
from quicfs.probe.model import Accepts, SmbFacts
from quicfs.smb2 import negotiate as wire
from quicfs.smb2.constants import (
    Capabilities,
    Cipher,
    Command,
    Dialect,
    HashAlgorithm,
    SecurityMode,
    SigningAlgorithm,
    TransportCapabilityFlags,
)
from quicfs.smb2.filetime import filetime_to_ns
from quicfs.smb2.header import Header
from quicfs.smb2.negotiate import NegotiateResponse
from quicfs.smb2.status import Status, status_name
from quicfs.transport.base import MessageTransport

#: Every dialect SMB2 has, newest first.
DIALECTS = (Dialect.SMB_3_1_1, Dialect.SMB_3_0_2, Dialect.SMB_3_0, Dialect.SMB_2_1,
            Dialect.SMB_2_0_2)
DIALECT_NAMES = {Dialect.SMB_3_1_1: "3.1.1", Dialect.SMB_3_0_2: "3.0.2",
                 Dialect.SMB_3_0: "3.0", Dialect.SMB_2_1: "2.1", Dialect.SMB_2_0_2: "2.0.2"}
CIPHER_NAMES = {Cipher.AES_128_GCM: "AES-128-GCM", Cipher.AES_256_GCM: "AES-256-GCM",
                Cipher.AES_128_CCM: "AES-128-CCM", Cipher.AES_256_CCM: "AES-256-CCM"}
SIGNING_NAMES = {SigningAlgorithm.AES_GMAC: "AES-GMAC", SigningAlgorithm.AES_CMAC: "AES-CMAC",
                 SigningAlgorithm.HMAC_SHA256: "HMAC-SHA256"}
#: 2.2.3.1.3 CompressionAlgorithms.
COMPRESSION_NAMES = {1: "LZNT1", 2: "LZ77", 3: "LZ77+Huffman", 4: "Pattern_V1", 5: "LZ4"}
#: Samba's SMB3 POSIX extensions context and its fixed GUID (the SMB3 POSIX extensions
#: specification, 2.2.3.1): a server that speaks them echoes it.
POSIX_CONTEXT = 0x0100
POSIX_GUID = bytes.fromhex("93ad25509cb411e7b42383de968bcd7c")


def dialect_name(dialect: int) -> str:
    return DIALECT_NAMES.get(dialect, f"{dialect:#06x}")  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Offer:
    """What one NEGOTIATE offers."""

    dialects: tuple[int, ...] = DIALECTS
    ciphers: tuple[int, ...] = tuple(CIPHERS)
    signing: tuple[int, ...] = tuple(SIGNING_ALGORITHMS)
    #: The transport capabilities context: offered over QUIC only, as quicfs does.
    quic: bool = False

    def request(self, server_name: str) -> wire.NegotiateRequest:
        contexts: tuple[wire.NegotiateContext, ...] = ()
        if Dialect.SMB_3_1_1 in self.dialects:
            # Every context a client may send (2.2.3.1), POSIX's too; the transport's over
            # QUIC only.
            contexts = (
                wire.PreauthIntegrityContext((HashAlgorithm.SHA_512,), os.urandom(32)),
                wire.EncryptionContext(self.ciphers), wire.SigningContext(self.signing),
                wire.CompressionContext(tuple(COMPRESSION_NAMES), chained=True),
                wire.NetnameContext(server_name),
                wire.UnknownContext(POSIX_CONTEXT, POSIX_GUID),
                *([wire.TransportCapabilitiesContext()] if self.quic else []))
        return wire.NegotiateRequest(
            dialects=self.dialects, security_mode=SecurityMode.SIGNING_ENABLED,
            capabilities=Capabilities.DFS | Capabilities.LEASING | Capabilities.LARGE_MTU
            | Capabilities.MULTI_CHANNEL | Capabilities.PERSISTENT_HANDLES
            | Capabilities.DIRECTORY_LEASING | Capabilities.ENCRYPTION,
            client_guid=uuid.uuid4(), contexts=contexts)


async def negotiate(transport: MessageTransport, offer: Offer, server_name: str,
                    within: float) -> NegotiateResponse:
    """Send one NEGOTIATE and read its answer. :class:`SMBError` for an error status,
    :class:`ConnectionLost` for a server that closes or says nothing within
    ``within`` seconds, :class:`ProtocolError` for an answer that breaks MS-SMB2."""
    header = Header(command=Command.NEGOTIATE, message_id=0, credits=1)
    await transport.send_message(header.pack() + offer.request(server_name).pack())
    try:
        with trio.fail_after(within):
            for _ in range(8):  # a server may send a break or an interim first
                message = await transport.receive_message()
                reply = Header.unpack(message)
                if reply.command == Command.NEGOTIATE and reply.is_response \
                        and reply.message_id == 0 and reply.status != Status.PENDING:
                    break
            else:
                raise ProtocolError("no answer to NEGOTIATE among the server's messages")
    except trio.TooSlowError:
        raise ConnectionLost(f"{transport.peer} did not answer NEGOTIATE within "
                             f"{within:g} s") from None
    if reply.status != Status.SUCCESS:
        raise SMBError(reply.status, f"the server refused NEGOTIATE: "
                                     f"{status_name(reply.status)}")
    return NegotiateResponse.unpack(message)


def facts(resp: NegotiateResponse, *, quic: bool, took: float) -> SmbFacts:
    """The report's view of a NEGOTIATE answer to the full :class:`Offer`."""
    cipher: str | None = None
    signing = "AES-CMAC" if resp.dialect >= Dialect.SMB_3_0 else "HMAC-SHA256"
    compression: list[str] = []
    transport_security: bool | None = None
    if resp.dialect == Dialect.SMB_3_1_1:
        enc = resp.context(wire.EncryptionContext)
        if isinstance(enc, wire.EncryptionContext) and enc.ciphers and enc.ciphers[0]:
            cipher = CIPHER_NAMES.get(enc.ciphers[0], f"{enc.ciphers[0]:#06x}")  # type: ignore[call-overload]
        sig = resp.context(wire.SigningContext)
        if isinstance(sig, wire.SigningContext) and sig.algorithms:
            signing = SIGNING_NAMES.get(sig.algorithms[0], f"{sig.algorithms[0]:#06x}")  # type: ignore[call-overload]
        comp = resp.context(wire.CompressionContext)
        if isinstance(comp, wire.CompressionContext):
            compression = [COMPRESSION_NAMES.get(a, f"{a:#06x}") for a in comp.algorithms
                           if a]
            if compression and comp.chained:
                compression.append("chained")
        if quic:
            tc = resp.context(wire.TransportCapabilitiesContext)
            transport_security = isinstance(tc, wire.TransportCapabilitiesContext) and bool(
                tc.flags & TransportCapabilityFlags.ACCEPT_TRANSPORT_LEVEL_SECURITY)
    elif resp.dialect >= Dialect.SMB_3_0 and resp.capabilities & Capabilities.ENCRYPTION:
        cipher = "AES-128-CCM"  # the one cipher of 3.0 and 3.0.2 (3.1.4.3)
    posix = any(isinstance(c, wire.UnknownContext) and c.type == POSIX_CONTEXT
                for c in resp.contexts)
    skew = (filetime_to_ns(resp.system_time) - time.time_ns()) / 1e9 if resp.system_time \
        else None
    return SmbFacts(
        dialect=dialect_name(resp.dialect),
        server_guid=str(resp.server_guid),
        signing_required=bool(resp.security_mode & SecurityMode.SIGNING_REQUIRED),
        capabilities=[c.name for c in Capabilities if c and c in resp.capabilities
                      and c.name],
        max_read_size=resp.max_read_size, max_write_size=resp.max_write_size,
        max_transact_size=resp.max_transact_size,
        cipher=cipher, signing=signing, compression=compression,
        transport_security=transport_security, posix_extensions=posix,
        authentication=spnego_mechanisms(resp.security_buffer),
        clock_skew=None if skew is None else round(skew, 1) + 0.0,  # never -0.0
        negotiate_ms=round(took * 1000, 1),
    )


@dataclass(frozen=True, slots=True)
class _Check:
    """One thing a NEGOTIATE round settles: whether ``name`` goes into ``table``."""

    table: dict[str, bool]
    name: str
    ok: Callable[[NegotiateResponse], bool]


async def accepted(opener: Callable[[], Awaitable[MessageTransport]],
                   main: NegotiateResponse, *, server_name: str, quic: bool, within: float,
                   over: str) -> Accepts:
    """What the server accepts besides what it chose in ``main`` (its answer to the full
    :class:`Offer`): each lower dialect, and (for 3.1.1) each cipher and signing algorithm
    on its own, each on a connection that ``opener`` opens, all at once. What no answer
    settled (a connection that could not be opened) is listed as unknown."""
    chosen = facts(main, quic=quic, took=0.0)
    dialects = {chosen.dialect: True}
    ciphers = {chosen.cipher: True} if chosen.cipher else {}
    signing = {chosen.signing: True}
    rounds: list[tuple[Offer, list[_Check]]] = []
    for dialect in DIALECTS:
        if dialect < main.dialect:
            rounds.append((Offer(dialects=(dialect,), quic=quic),
                           [_Check(dialects, dialect_name(dialect),
                                   partial(_chose_dialect, dialect))]))
    if main.dialect == Dialect.SMB_3_1_1:
        more_ciphers = [c for c in CIPHERS if CIPHER_NAMES[c] not in ciphers]
        more_signing = [a for a in SIGNING_ALGORITHMS if SIGNING_NAMES[a] not in signing]
        for cipher, algorithm in zip_longest(more_ciphers, more_signing):
            checks = []
            if cipher is not None:
                checks.append(_Check(ciphers, CIPHER_NAMES[cipher],
                                     partial(_chose, wire.EncryptionContext, cipher)))
            if algorithm is not None:
                checks.append(_Check(signing, SIGNING_NAMES[algorithm],
                                     partial(_chose, wire.SigningContext, algorithm)))
            rounds.append((Offer(
                dialects=(Dialect.SMB_3_1_1,),
                ciphers=(cipher,) if cipher is not None else tuple(CIPHERS),
                signing=(algorithm,) if algorithm is not None else tuple(SIGNING_ALGORITHMS),
                quic=quic), checks))
    unknown: list[str] = []

    async def one(offer: Offer, checks: list[_Check]) -> None:
        try:
            transport = await opener()
        except (ConnectError, OSError):
            unknown.extend(check.name for check in checks)
            return
        resp: NegotiateResponse | None = None
        try:
            resp = await negotiate(transport, offer, server_name, within)
        except (QuicfsError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # refused, or the connection closed: not accepted
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await transport.aclose()
                except (QuicfsError, OSError, trio.BrokenResourceError):
                    pass
        for check in checks:
            check.table[check.name] = resp is not None and check.ok(resp)

    async with trio.open_nursery() as nursery:
        for offer, checks in rounds:
            nursery.start_soon(one, offer, checks)

    def order(table: dict[str, bool], names: list[str]) -> list[str]:
        return [name for name in names if table.get(name)]

    return Accepts(
        over=over,
        dialects=order(dialects, [dialect_name(d) for d in DIALECTS]),
        ciphers=order(ciphers, [CIPHER_NAMES[c] for c in CIPHERS]),
        signing=order(signing, [SIGNING_NAMES[a] for a in SIGNING_ALGORITHMS]),
        unknown=unknown,
    )


def _chose_dialect(dialect: int, resp: NegotiateResponse) -> bool:
    return resp.dialect == dialect


def _chose(kind: type, wanted: int, resp: NegotiateResponse) -> bool:
    """The answer chose ``wanted`` in its context of ``kind``; a server that has none of
    what was offered answers cipher 0 (2.2.4.1.2) or, for signing, AES-CMAC, with or
    without a context (3.2.5.2)."""
    if resp.dialect != Dialect.SMB_3_1_1:
        return False
    ctx = resp.context(kind)
    if ctx is None:
        return kind is wire.SigningContext and wanted == SigningAlgorithm.AES_CMAC
    values = getattr(ctx, "ciphers", None) or getattr(ctx, "algorithms", None) or ()
    return bool(values) and values[0] == wanted
