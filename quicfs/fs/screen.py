"""What a server says about names and attributes, screened before the kernel sees it.

A server (or a man in the middle under ``insecure``) may list any UTF-16 string as a
name, and any 64-bit value as a size or a time. The kernel refuses a directory whose
readdir reply holds an empty name or one with '/' (fuse_parse_dirfile: the whole getdents
fails with EIO), a NUL ends the name early in libfuse (another file's name, perhaps),
and a '\\' would be looked up as a path separator on the server: each such entry is
skipped, the rest of the listing kept. Values the kernel or pyfuse3 cannot hold (a size
of 2^63 or more does not fit off_t: OverflowError) are held to the nearest one they can.
What was skipped or bounded is logged by kind, at most once per interval
(quicfs/refusals.py): the server decides how often it happens, not how much is logged.

Pure apart from the log: no pyfuse3, no I/O.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from quicfs.client.open import FileStat
from quicfs.refusals import Refusals
from quicfs.smb2.filetime import FILETIME_MAX, filetime_to_ns

log = logging.getLogger("quicfs.fs")

#: Longest name a Linux program expects (NAME_MAX; glibc's dirent holds 255 bytes).
NAME_MAX = 255
#: Largest size and block count the kernel takes (off_t, blkcnt_t: signed 64-bit).
MAX_SIZE = 2**63 - 1
#: Link counts travel to the kernel as 32 bits (struct fuse_attr).
MAX_NLINK = 2**32 - 1
#: Times a FILETIME can say (MS-DTYP 2.3.3: a signed 64-bit count from 1601), as ns.
MIN_TIME_NS = filetime_to_ns(0)
MAX_TIME_NS = filetime_to_ns(FILETIME_MAX)

#: Names that are never a listed file's: ours to add, or a path's parts.
_DOTS = frozenset({".", ".."})


def bad_name(name: str) -> str | None:
    """Why a listed ``name`` must not reach the kernel (the kind, for the log), or None."""
    if not name:
        return "an empty name"
    if name in _DOTS:
        return "'.' or '..' as an entry"
    if "/" in name:
        return "a name with '/'"
    if "\0" in name:
        return "a name with NUL"
    if "\\" in name:
        return "a name with '\\'"
    try:
        # Strict: a lone surrogate (invalid UTF-16 on the wire) is no name; os.fsencode
        # would make one of U+DC80..U+DCFF a raw byte, and the server could not be
        # asked for that name again.
        size = len(name.encode("utf-8"))
    except UnicodeError:
        return "a name that is not UTF-16"
    if size > NAME_MAX:
        return f"a name over {NAME_MAX} bytes"
    return None


def unbounded(st: FileStat) -> str | None:
    """Which of ``st``'s values the kernel cannot hold (the first found), or None."""
    if not 0 <= st.size <= MAX_SIZE or not 0 <= st.allocation_size <= MAX_SIZE:
        return "a size of 2^63 or more"
    for ns in (st.atime_ns, st.mtime_ns, st.ctime_ns, st.creation_ns):
        if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
            return "a time past what a FILETIME says"
    if not 0 <= st.nlink <= MAX_NLINK:
        return "a link count past 2^32"
    return None


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def bounded(st: FileStat) -> FileStat:
    """``st`` with each value held within what the kernel can take."""
    return dataclasses.replace(
        st,
        size=_clamp(st.size, 0, MAX_SIZE),
        # Blocks are counted from this (512 bytes each): it must not overflow either.
        allocation_size=_clamp(st.allocation_size, 0, MAX_SIZE - 511),
        atime_ns=_clamp(st.atime_ns, MIN_TIME_NS, MAX_TIME_NS),
        mtime_ns=_clamp(st.mtime_ns, MIN_TIME_NS, MAX_TIME_NS),
        ctime_ns=_clamp(st.ctime_ns, MIN_TIME_NS, MAX_TIME_NS),
        creation_ns=_clamp(st.creation_ns, MIN_TIME_NS, MAX_TIME_NS),
        nlink=_clamp(st.nlink, 0, MAX_NLINK),
    )


class Screen:
    """The mount's screen: drops bad names, bounds attributes, logs both by kind."""

    def __init__(self) -> None:
        self.refused = Refusals(log, level=logging.WARNING)

    def names(self, directory: str, entries: list[FileStat]) -> list[FileStat]:
        """The entries of one page of ``directory``'s listing the kernel may see."""
        kept = []
        for st in entries:
            why = bad_name(st.name)
            if why is None:
                kept.append(st)
            else:
                self.refused.note(f"listing with {why} (entry skipped)",
                                  lambda st=st: f"in {directory or '/'}: {st.name[:80]!r}",
                                  time.monotonic())
        return kept

    def eas(self, path: str, eas: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """``path``'s EAs whose names may be listed: listxattr(2) separates names with
        NUL, so one with a NUL in it would list two, the second any name the server
        likes (security.capability); an empty one would list as the bare prefix. An EA
        name is neither (MS-FSCC 2.4.15: a NUL ends it, EaNameLength counts from 1)."""
        kept = []
        for name, value in eas:
            if name and b"\0" not in name:
                kept.append((name, value))
            else:
                self.refused.note("an EA name that is empty or holds a NUL (not listed)",
                                  lambda name=name: f"on {path or '/'}: {name[:80]!r}",
                                  time.monotonic())
        return kept

    def attrs(self, st: FileStat) -> FileStat:
        """``st`` as the kernel may take it; what had to be bounded is logged."""
        why = unbounded(st)
        if why is None:
            return st
        self.refused.note(f"attributes with {why} (bounded)",
                          lambda: f"{st.name[:80]!r}", time.monotonic())
        return bounded(st)


__all__ = ["MAX_SIZE", "MAX_TIME_NS", "MIN_TIME_NS", "NAME_MAX", "Screen", "bad_name",
           "bounded", "unbounded"]
