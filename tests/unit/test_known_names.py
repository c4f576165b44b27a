"""Names known absent after a complete listing or a mkdir, for actimeo (fs/absent.py)."""

from __future__ import annotations

from quicfs.fs import absent
from quicfs.fs.absent import KnownNames


def test_a_listing_tells_which_names_are_absent_until_it_expires():
    known = KnownNames(ttl=1.0)
    known.listed("d", ["a", "B"], now=10.0)
    assert known.absent("d", "c", 10.5)
    assert not known.absent("d", "a", 10.5)
    assert not known.absent("d", "b", 10.5)  # case-folded: a server may ignore case
    assert not known.absent("other", "c", 10.5)  # never listed: ask
    assert not known.absent("d", "c", 11.0)  # expired: ask
    assert not known.absent("d", "c", 10.5)  # and forgotten


def test_names_made_here_are_present():
    known = KnownNames(ttl=1.0)
    known.listed("d", [], now=0.0)
    known.added("d/new")
    known.added("elsewhere/x")  # a directory not known: nothing to keep
    assert not known.absent("d", "new", 0.1)
    assert known.absent("d", "other", 0.1)


def test_a_removed_or_renamed_directory_is_forgotten_with_what_is_below():
    known = KnownNames(ttl=1.0)
    for d in ("d", "d/sub", "d/sub/deeper", "dx"):
        known.listed(d, [], now=0.0)
    known.forget("d")
    assert not known.absent("d", "x", 0.1)
    assert not known.absent("d/sub", "x", 0.1)
    assert not known.absent("d/sub/deeper", "x", 0.1)
    assert known.absent("dx", "x", 0.1)  # a sibling whose name starts alike stays


def test_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(absent, "MAX_DIRS", 3)
    monkeypatch.setattr(absent, "MAX_NAMES", 2)
    known = KnownNames(ttl=1.0)
    known.listed("big", ["a", "b", "c"], now=0.0)
    assert not known.absent("big", "z", 0.1)  # too many names: not kept
    for d in ("1", "2", "3", "4"):
        known.listed(d, [], now=0.0)
    assert not known.absent("1", "z", 0.1)  # the oldest went
    assert known.absent("4", "z", 0.1)
