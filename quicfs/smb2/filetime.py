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


#: A FILETIME is a signed 64-bit count of 100 ns ticks since 1601.
FILETIME_MAX = 2**63 - 1


def ns_to_filetime(ns: int) -> int:
    """Unix nanoseconds as a FILETIME, rounded down to the 100 ns tick, and held within
    what a FILETIME can say (1601 to 30828), as a local file system clamps a time to
    its own range."""
    return min(max(ns // 100 + EPOCH_DELTA, 0), FILETIME_MAX)


def settable_filetime(ns: int) -> int:
    """A time for a SET_INFO: never 0, -1 or -2, which there mean "leave it", "stop
    updating it" and "resume" (MS-FSCC 2.4.7); 1601 itself becomes its first tick."""
    return max(ns_to_filetime(ns), 1)
