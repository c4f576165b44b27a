"""The little DER a probe reads (ITU-T X.690): the distinguished names of the CAs a
server names in its CertificateRequest (RFC 8446 4.2.4) and the mechanisms its SPNEGO
token offers in the NEGOTIATE response (RFC 4178 4.2.1, MS-SPNG 2.2.1). Anything that
does not parse is reported as such, never raised."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

#: SPNEGO mechanisms by OID (RFC 4178, RFC 4121, MS-NLMP, MS-NEGOEX).
MECHANISMS = {
    "1.2.840.48018.1.2.2": "Kerberos (Microsoft)",
    "1.2.840.113554.1.2.2": "Kerberos",
    "1.2.840.113554.1.2.2.3": "Kerberos user-to-user",
    "1.3.6.1.4.1.311.2.2.10": "NTLM",
    "1.3.6.1.4.1.311.2.2.30": "NegoEx",
}
SPNEGO = "1.3.6.1.5.5.2"

#: String types of an attribute value, and their encodings.
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
            0x1A: "ascii", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def elements(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, contents) of each DER element in ``data``, in order; ValueError where the
    bytes do not hold one."""
    at = 0
    while at < len(data):
        tag = data[at]
        if tag & 0x1F == 0x1F or at + 2 > len(data):
            raise ValueError("not DER")
        length = data[at + 1]
        at += 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 4 or at + count > len(data):
                raise ValueError("not DER")
            length = int.from_bytes(data[at:at + count], "big")
            at += count
        if at + length > len(data):
            raise ValueError("not DER")
        yield tag, data[at:at + length]
        at += length


def one(data: bytes, tag: int) -> bytes:
    """The contents of ``data`` when it is exactly one element of ``tag``."""
    found = list(elements(data))
    if len(found) != 1 or found[0][0] != tag:
        raise ValueError("not the element expected")
    return found[0][1]


def oid(contents: bytes) -> str:
    """An OBJECT IDENTIFIER's contents, dotted."""
    if not contents or contents[-1] & 0x80:
        raise ValueError("not an OID")
    top = min(contents[0] // 40, 2)
    parts = [top, contents[0] - 40 * top]
    value = 0
    for byte in contents[1:]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def distinguished_name(der: bytes) -> str:
    """A DER Name as RFC 4514 writes it (``CN=files CA,O=Example``); what does not parse
    as ``(unreadable name, N bytes)``."""
    try:
        rdns = []
        for set_tag, members in elements(one(der, 0x30)):
            if set_tag != 0x31:
                raise ValueError("not a Name")
            attributes = []
            for _, pair in elements(members):
                (oid_tag, oid_bytes), (value_tag, value) = list(elements(pair))[:2]
                if oid_tag != 0x06 or value_tag not in _STRINGS:
                    raise ValueError("not an attribute")
                attributes.append(x509.NameAttribute(
                    ObjectIdentifier(oid(oid_bytes)), value.decode(_STRINGS[value_tag])))
            rdns.append(x509.RelativeDistinguishedName(attributes))
        return x509.Name(rdns).rfc4514_string()
    except (ValueError, UnicodeDecodeError):
        return f"(unreadable name, {len(der)} bytes)"


def spnego_mechanisms(token: bytes) -> list[str]:
    """The mechTypes of a server's SPNEGO NegTokenInit, by name (:data:`MECHANISMS`) or
    dotted OID; [] for a token that is empty or not one."""
    try:
        inner = list(elements(one(token, 0x60)))  # [APPLICATION 0] InitialContextToken
        if len(inner) < 2 or inner[0][0] != 0x06 or oid(inner[0][1]) != SPNEGO \
                or inner[1][0] != 0xA0:  # [0] NegTokenInit
            return []
        init = one(inner[1][1], 0x30)
        for tag, field in elements(init):
            if tag == 0xA0:  # mechTypes
                return [MECHANISMS.get(dotted, dotted)
                        for dotted in (oid(b) for t, b in elements(one(field, 0x30))
                                       if t == 0x06)]
    except (ValueError, IndexError):
        return []
    return []
