"""FILETIME (MS-DTYP 2.3.3): 100-nanosecond intervals since 1601-01-01 UTC, as an int.

SMB2 carries every timestamp in this form; the rest of quicfs thinks in Unix nanoseconds.
A FILETIME of 0 means "not given" (and, in FileBasicInformation, "do not change"); callers
test for it before converting.
"""

from __future__ import annotations

#: 100 ns intervals between 1601-01-01 and 1970-01-01 (both UTC).
EPOCH_DELTA = 116_444_736_000_000_000


def filetime_to_ns(ft: int) -> int:
    """A FILETIME as nanoseconds since the Unix epoch (negative before 1970)."""
    return (ft - EPOCH_DELTA) * 100


def ns_to_filetime(ns: int) -> int:
    """Unix nanoseconds as a FILETIME, rounded down to the 100 ns tick."""
    return ns // 100 + EPOCH_DELTA
