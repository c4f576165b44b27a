"""Share URLs: ``//HOST[:PORT]/SHARE[/PATH]`` (also ``\\\\HOST\\SHARE\\PATH`` and
``smb://HOST[:PORT]/SHARE/PATH``). Pure parsing; errors are one clear line."""

from __future__ import annotations

from dataclasses import dataclass

from quicfs.errors import UsageError

EXPECTED = "expected //HOST[:PORT]/SHARE[/PATH]"


@dataclass(frozen=True, slots=True)
class ShareURL:
    host: str
    port: int | None
    share: str
    path: str = ""  # '/'-separated, no leading or trailing '/', '' for the share root

    @property
    def smb_path(self) -> str:
        return self.path.replace("/", "\\")

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"//{host}" + (f":{self.port}" if self.port else "")

    def join(self, name: str) -> ShareURL:
        path = normalize_path(f"{self.path}/{name}", str(self))
        return ShareURL(self.host, self.port, self.share, path)

    def __str__(self) -> str:
        return f"{self.server}/{self.share}" + (f"/{self.path}" if self.path else "")


def normalize_path(path: str, context: str) -> str:
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UsageError(f"path in URL '{context}' leaves the share")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def parse_url(text: str) -> ShareURL:
    raw = text
    if text.lower().startswith("smb://"):
        text = "//" + text[6:]
    elif text.startswith("\\\\"):
        text = text.replace("\\", "/")
    if not text.startswith("//") or text.startswith("///"):
        raise UsageError(f"malformed URL '{raw}': {EXPECTED}")
    rest = text[2:]
    authority, _, tail = rest.partition("/")
    host, port = parse_authority(authority, raw)
    share, _, path = tail.partition("/")
    if not share:
        raise UsageError(f"URL '{raw}' names no share")
    if any(c in share for c in '\\:*?"<>|') or share in (".", ".."):
        raise UsageError(f"bad share name '{share}' in URL '{raw}'")
    return ShareURL(host, port, share, normalize_path(path, raw))


def parse_authority(authority: str, raw: str) -> tuple[str, int | None]:
    if not authority:
        raise UsageError(f"malformed URL '{raw}': {EXPECTED}")
    if "@" in authority:
        raise UsageError(f"URL '{raw}' carries credentials; use -o username=... instead")
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UsageError(f"malformed IPv6 address in URL '{raw}'")
        host = authority[1:end]
        after = authority[end + 1 :]
        if after:
            if not after.startswith(":"):
                raise UsageError(f"malformed URL '{raw}': {EXPECTED}")
            port_text = after[1:]
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    elif ":" in authority:
        raise UsageError(f"IPv6 address in URL '{raw}' must be in brackets: //[ADDR]:PORT/SHARE")
    else:
        host = authority
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"bad host in URL '{raw}'")
    if ":" not in host:  # not an IPv6 address
        _check_name(host, raw)
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad port '{port_text}' in URL '{raw}'")
        port = int(port_text)
    return host, port


def _check_name(host: str, raw: str) -> None:
    """A host name's labels are 1-63 bytes and the whole at most 253 (RFC 1035 2.3.4),
    a label beyond ASCII counted as IDNA puts it on the wire (RFC 5891): the resolver
    refuses anything else with an error of its own, late and unclear."""
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    try:
        sizes = [len(label.encode("idna")) for label in labels]
    except UnicodeError:
        sizes = [0]
    if not all(0 < size <= 63 for size in sizes):
        raise UsageError(f"bad host '{host}' in URL '{raw}': each dot-separated part of a "
                         "name is 1 to 63 characters")
    if sum(sizes) + len(sizes) - 1 > 253:
        raise UsageError(f"bad host '{host}' in URL '{raw}': a name is at most 253 "
                         "characters")
