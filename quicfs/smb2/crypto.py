"""SMB 3.1.1 key derivation, signing and encryption (MS-SMB2 3.1.4), on `cryptography`.

Nothing here is hand-rolled: AES-CMAC, AES-GCM/GMAC, AES-CCM and HMAC come from
`cryptography` and the standard library; this module only arranges their inputs the way
MS-SMB2 says.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from quicfs.smb2.constants import (
    TRANSFORM_PROTOCOL_ID,
    Cipher,
    Command,
    HeaderFlags,
    SigningAlgorithm,
)
from quicfs.smb2.errors import MalformedError, SecurityError
from quicfs.smb2.header import SIGNATURE_OFFSET, SIGNATURE_SIZE
from quicfs.smb2.transform import (
    AAD_OFFSET,
    FLAG_ENCRYPTED,
    TRANSFORM_HEADER_SIZE,
    TransformHeader,
)

SIGNING_KEY_BITS = 128
_FLAGS_OFFSET = 16


def kdf(key: bytes, label: bytes, context: bytes, length_bits: int) -> bytes:
    """SP800-108 KDF in counter mode with HMAC-SHA256, r = 32 (MS-SMB2 3.1.4.2).

    K(i) = HMAC(Ki, [i]_32 || Label || 0x00 || Context || [L]_32); labels are passed with
    their own trailing NUL as MS-SMB2 lists them, so the separator byte follows it.
    """
    out = b""
    counter = 1
    while len(out) * 8 < length_bits:
        data = (counter.to_bytes(4, "big") + label + b"\x00" + context
                + length_bits.to_bytes(4, "big"))
        out += hmac.new(key, data, hashlib.sha256).digest()
        counter += 1
    return out[: length_bits // 8]


class PreauthIntegrity:
    """The SHA-512 pre-authentication hash chain (MS-SMB2 3.2.5.2, 3.2.4.2.3)."""

    __slots__ = ("_value",)

    def __init__(self, initial: bytes = bytes(64)) -> None:
        self._value = initial

    def update(self, message: bytes) -> None:
        self._value = hashlib.sha512(self._value + bytes(message)).digest()

    @property
    def value(self) -> bytes:
        return self._value

    def copy(self) -> PreauthIntegrity:
        return PreauthIntegrity(self._value)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    signing_key: bytes
    encryption_key: bytes  # client -> server
    decryption_key: bytes  # server -> client
    application_key: bytes


def cipher_key_bits(cipher: Cipher | None) -> int:
    return 256 if cipher in (Cipher.AES_256_CCM, Cipher.AES_256_GCM) else 128


def derive_keys_311(gss_key: bytes, preauth_hash: bytes, cipher: Cipher | None) -> SessionKeys:
    """3.2.5.3.1: the four keys of a 3.1.1 session, the pre-auth hash as KDF context.

    ``gss_key`` is the key the authentication protocol gave (Session.FullSessionKey):
    16 bytes from NTLM, the 32 of an AES-256 Kerberos subkey. Session.SessionKey is its
    first 16 bytes (zero-padded if shorter): the signing and application keys come from
    that, and so do the cipher keys, except that for AES-256 ciphers they are 256 bits
    (L = 256) from the full key.
    """
    session_key = gss_key[:16].ljust(16, b"\x00")
    bits = cipher_key_bits(cipher)
    cipher_base = gss_key if bits == 256 else session_key
    return SessionKeys(
        signing_key=kdf(session_key, b"SMBSigningKey\x00", preauth_hash, SIGNING_KEY_BITS),
        encryption_key=kdf(cipher_base, b"SMBC2SCipherKey\x00", preauth_hash, bits),
        decryption_key=kdf(cipher_base, b"SMBS2CCipherKey\x00", preauth_hash, bits),
        application_key=kdf(session_key, b"SMBAppKey\x00", preauth_hash, SIGNING_KEY_BITS),
    )


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TO_REDIR = int(HeaderFlags.SERVER_TO_REDIR)
_CANCEL = int(Command.CANCEL)


def _gmac_nonce(message: bytes | bytearray | memoryview) -> bytes:
    """3.1.4.1: MessageId, then a 32-bit field whose bit 0 is the role (1 = server) and
    bit 1 marks a CANCEL request."""
    from_server = _U32.unpack_from(message, 16)[0] & _TO_REDIR
    if from_server:
        extra = b"\x01\x00\x00\x00"
    elif _U16.unpack_from(message, 12)[0] == _CANCEL:
        extra = b"\x02\x00\x00\x00"
    else:
        extra = b"\x00\x00\x00\x00"
    return bytes(message[24:32]) + extra


# Every message is signed or checked with the session's one key: the key schedule is
# made once per key, not once per message.
@functools.lru_cache(maxsize=64)
def _gcm(key: bytes) -> AESGCM:
    return AESGCM(key)


@functools.lru_cache(maxsize=64)
def _cmac(key: bytes) -> cmac.CMAC:
    return cmac.CMAC(algorithms.AES(key))


def _mac(algorithm: SigningAlgorithm | int, key: bytes,
         data: bytes | bytearray | memoryview) -> bytes:
    """The MAC of ``data`` exactly as given (its signature field already zero)."""
    if algorithm == SigningAlgorithm.AES_GMAC:
        # GMAC is GCM with nothing to encrypt: the whole message is authenticated data.
        return _gcm(key).encrypt(_gmac_nonce(data), b"", data)[-16:]
    if algorithm == SigningAlgorithm.AES_CMAC:
        mac = _cmac(key).copy()  # the cached one is never updated, only copied
        mac.update(data)
        return mac.finalize()
    if algorithm == SigningAlgorithm.HMAC_SHA256:
        return hmac.new(key, data, hashlib.sha256).digest()[:16]
    raise ValueError(f"unknown signing algorithm {algorithm}")


_SIG = slice(SIGNATURE_OFFSET, SIGNATURE_OFFSET + SIGNATURE_SIZE)


def sign(algorithm: SigningAlgorithm | int, key: bytes,
         message: bytes | bytearray | memoryview) -> bytes:
    """The 16-byte signature of one message, its signature field taken as zero (3.1.4.1)."""
    if len(message) < 64:
        raise MalformedError("message shorter than an SMB2 header cannot be signed")
    data = bytearray(message)
    data[_SIG] = bytes(SIGNATURE_SIZE)
    return _mac(algorithm, key, data)


def sign_message(algorithm: SigningAlgorithm | int, key: bytes, message: bytearray) -> None:
    """Set SMB2_FLAGS_SIGNED and write the signature into ``message`` in place (no copy of
    the message is made: large WRITEs are signed where they lie)."""
    if len(message) < 64:
        raise MalformedError("message shorter than an SMB2 header cannot be signed")
    flags = int.from_bytes(message[_FLAGS_OFFSET : _FLAGS_OFFSET + 4], "little")
    message[_FLAGS_OFFSET : _FLAGS_OFFSET + 4] = (flags | HeaderFlags.SIGNED).to_bytes(4, "little")
    message[_SIG] = bytes(SIGNATURE_SIZE)
    message[_SIG] = _mac(algorithm, key, message)


def verify(algorithm: SigningAlgorithm | int, key: bytes,
           message: bytes | bytearray | memoryview) -> None:
    """Raise SecurityError unless the message carries the right signature (3.2.5.1.3).

    A writable buffer (the receiver's own frame) is checked in place: its signature field
    is zeroed for the MAC and put back afterwards.
    """
    if len(message) < 64:
        raise MalformedError("message shorter than an SMB2 header")
    got = bytes(message[_SIG])
    view = memoryview(message)
    if view.readonly:
        expected = sign(algorithm, key, message)
    else:
        view[_SIG] = bytes(SIGNATURE_SIZE)
        try:
            expected = _mac(algorithm, key, view)
        finally:
            view[_SIG] = got
    if not hmac.compare_digest(got, expected):
        command = int.from_bytes(bytes(message[12:14]), "little")
        mid = int.from_bytes(bytes(message[24:32]), "little")
        try:
            name = Command(command).name
        except ValueError:
            name = f"command {command:#x}"
        raise SecurityError(f"bad signature on {name} response (MessageId {mid})")


def _aead(cipher: Cipher | int, key: bytes) -> tuple[AESGCM | AESCCM, int]:
    if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):
        return AESGCM(key), 12
    if cipher in (Cipher.AES_128_CCM, Cipher.AES_256_CCM):
        return AESCCM(key, tag_length=16), 11
    raise ValueError(f"unknown cipher {cipher}")


def encrypt_message(cipher: Cipher | int, key: bytes, session_id: int, plaintext: bytes,
                    nonce: bytes | None = None) -> bytes:
    """Transform header + ciphertext of one message or compound chain (3.1.4.3)."""
    aead, nonce_len = _aead(cipher, key)
    if nonce is None:
        nonce = os.urandom(nonce_len)
    head = TransformHeader(bytes(16), nonce, len(plaintext), session_id, FLAG_ENCRYPTED).pack()
    sealed = aead.encrypt(nonce[:nonce_len], plaintext, head[AAD_OFFSET:])
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return TRANSFORM_PROTOCOL_ID + tag + head[AAD_OFFSET:] + ciphertext


def decrypt_message(cipher: Cipher | int, key: bytes,
                    data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(SessionId, plaintext); a failed tag is a SecurityError, never data (3.2.5.1.1.1)."""
    th = TransformHeader.unpack(data)
    ciphertext = bytes(data[TRANSFORM_HEADER_SIZE:])
    if th.original_size != len(ciphertext):
        raise MalformedError(
            f"transform header says {th.original_size} bytes, {len(ciphertext)} follow"
        )
    if th.flags != FLAG_ENCRYPTED:
        raise MalformedError(f"transform header flags {th.flags:#x}, expected encrypted")
    aead, nonce_len = _aead(cipher, key)
    aad = bytes(data[AAD_OFFSET:TRANSFORM_HEADER_SIZE])
    try:
        plaintext = aead.decrypt(th.nonce[:nonce_len], ciphertext + th.signature, aad)
    except InvalidTag:
        raise SecurityError(
            f"decryption failed for session {th.session_id:#x}: message altered or wrong key"
        ) from None
    return th.session_id, plaintext


def is_encrypted(data: bytes | bytearray | memoryview) -> bool:
    return bytes(data[:4]) == TRANSFORM_PROTOCOL_ID
