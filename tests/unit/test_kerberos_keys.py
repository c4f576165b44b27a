"""The keys of a session whose authentication gave more than 16 bytes: a Kerberos AES-256
subkey is 32 (MS-SMB2 3.2.5.3.1). Session.SessionKey is its first 16 bytes, from which
come the signing, application and AES-128 keys; AES-256 keys come from the whole
(Session.FullSessionKey). Samba and Windows do so: a client that signed with the whole
key had the last SESSION_SETUP response fail its signature check
(tests/integration/test_kerberos.py)."""

from __future__ import annotations

from quicfs.smb2 import crypto
from quicfs.smb2.constants import Cipher
from tests.unit.test_crypto_vectors import PREAUTH_311, SESSION_KEY_311, H

#: Microsoft's 3.1.1 example session key, as the first half of a 32-byte Kerberos key.
FULL_KEY = SESSION_KEY_311 + H("00112233445566778899AABBCCDDEEFF")


def test_signing_application_and_aes_128_keys_come_from_the_first_16_bytes():
    whole = crypto.derive_keys_311(FULL_KEY, PREAUTH_311, Cipher.AES_128_GCM)
    first = crypto.derive_keys_311(SESSION_KEY_311, PREAUTH_311, Cipher.AES_128_GCM)
    assert whole == first
    # Microsoft's published AES-128-GCM keys for that session key.
    assert whole.encryption_key == H("A2F5E80E5D59103034F32E52F698E5EC")
    assert whole.decryption_key == H("748C50868C90F302962A5C35F5F9A8BF")


def test_aes_256_keys_come_from_the_whole_key():
    whole = crypto.derive_keys_311(FULL_KEY, PREAUTH_311, Cipher.AES_256_GCM)
    first = crypto.derive_keys_311(SESSION_KEY_311, PREAUTH_311, Cipher.AES_256_GCM)
    assert whole.signing_key == first.signing_key
    assert whole.application_key == first.application_key
    assert whole.encryption_key == crypto.kdf(FULL_KEY, b"SMBC2SCipherKey\x00", PREAUTH_311, 256)
    assert whole.decryption_key == crypto.kdf(FULL_KEY, b"SMBS2CCipherKey\x00", PREAUTH_311, 256)
    assert whole.encryption_key != first.encryption_key

