"""What a directory's last whole listing said, for actimeo (fs/known.py): names absent,
and the attributes of those listed until this mount changes them."""

from __future__ import annotations

from quicfs.client.open import FileStat
from quicfs.fs import known as known_module
from quicfs.fs.known import KnownNames
from quicfs.smb2.constants import FileAttributes


def st(name: str, size: int = 0) -> FileStat:
    return FileStat(name=name, size=size, allocation_size=0,
                    attributes=FileAttributes.ARCHIVE, creation_ns=0, atime_ns=0,
                    mtime_ns=0, ctime_ns=0, file_id=len(name))


def listed(*names: str) -> list[tuple[str, FileStat]]:
    return [(n, st(n)) for n in names]


def test_a_listing_tells_which_names_are_absent_until_it_expires():
    known = KnownNames(ttl=1.0)
    known.listed("d", listed("a", "B"), now=10.0)
    assert known.holds("d", 10.5)
    assert known.absent("d", "c", 10.5)
    assert not known.absent("d", "a", 10.5)
    assert not known.absent("d", "b", 10.5)  # case-folded: a server may ignore case
    assert not known.absent("other", "c", 10.5)  # never listed: ask
    assert not known.holds("other", 10.5)
    assert not known.absent("d", "c", 11.0)  # expired: ask
    assert not known.absent("d", "c", 10.5)  # and forgotten
    assert not known.holds("d", 10.5)


def test_a_listed_name_answers_with_its_attributes_by_its_exact_name():
    known = KnownNames(ttl=1.0)
    known.listed("d", [("a", st("a", 7)), ("B", st("B", 9))], now=0.0)
    found = known.entry("d", "a", 0.5)
    assert found is not None and found.size == 7
    assert known.entry("d", "b", 0.5) is None  # another case: the server is asked
    assert known.entry("d", "c", 0.5) is None
    assert known.entry("d", "a", 1.0) is None  # expired


def test_names_made_or_changed_here_are_held_without_attributes():
    known = KnownNames(ttl=1.0)
    known.listed("d", listed("old"), now=0.0)
    known.changed("d/new")
    known.changed("d/old")  # written here: what the listing said of it is not true
    known.changed("elsewhere/x")  # a directory not known: nothing to keep
    assert not known.absent("d", "new", 0.1)
    assert not known.absent("d", "old", 0.1)
    assert known.entry("d", "old", 0.1) is None
    assert known.entry("d", "new", 0.1) is None
    assert known.absent("d", "other", 0.1)


def test_a_removed_or_renamed_directory_is_forgotten_with_what_is_below():
    known = KnownNames(ttl=1.0)
    for d in ("d", "d/sub", "d/sub/deeper", "dx"):
        known.listed(d, listed("f"), now=0.0)
    known.listed("", listed("d"), now=0.0)
    known.forget("d")
    assert not known.absent("d", "x", 0.1)
    assert not known.absent("d/sub", "x", 0.1)
    assert not known.absent("d/sub/deeper", "x", 0.1)
    assert known.absent("dx", "x", 0.1)  # a sibling whose name starts alike stays
    assert known.entry("", "d", 0.1) is None  # its own entry goes too
    assert not known.absent("", "d", 0.1)  # but its name is asked about, never absent


def test_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(known_module, "MAX_DIRS", 3)
    monkeypatch.setattr(known_module, "MAX_NAMES", 2)
    monkeypatch.setattr(known_module, "MAX_ENTRIES", 4)
    known = KnownNames(ttl=1.0)
    known.listed("big", listed("a", "b", "c"), now=0.0)
    assert not known.absent("big", "z", 0.1)  # too many names: not kept
    for d in ("1", "2", "3", "4"):
        known.listed(d, [], now=0.0)
    assert not known.absent("1", "z", 0.1)  # the oldest went
    assert known.absent("4", "z", 0.1)
    known.listed("5", listed("a", "b"), now=0.0)
    known.listed("6", listed("a", "b"), now=0.0)
    known.listed("7", listed("a"), now=0.0)  # five attributes in all: the oldest go
    assert not known.holds("5", 0.1)
    assert known.entry("6", "a", 0.1) is not None
    assert known.entry("7", "a", 0.1) is not None
    known.listed("7", listed("x", "y"), now=0.0)  # listed again: counted once
    assert known.entry("6", "b", 0.1) is not None


def test_a_change_by_any_spelling_drops_the_listed_attributes():
    """A server that ignores case holds one file for "A" and "a": what this mount does
    through either spelling makes the listed attributes untrue. Two names that fold
    alike (a case-sensitive server) are never answered from the listing."""
    known = KnownNames(ttl=1.0)
    known.listed("d", listed("a", "Twin", "twin"), now=0.0)
    known.changed("d/A")
    assert known.entry("d", "a", 0.1) is None
    assert known.entry("d", "Twin", 0.1) is None
    assert known.entry("d", "twin", 0.1) is None
    assert not known.absent("d", "TWIN", 0.1)
    assert known.left("d", 0.25) == 0.75
    assert known.left("other", 0.25) == 0.0


def test_under_a_lease_names_outlast_the_ttl_and_attributes_do_not():
    alive = {"lease": True}
    known = KnownNames(ttl=1.0, alive=lambda lease: alive[lease])
    known.listed("d", [("a", st("a", 7))], now=0.0, lease="lease")
    assert known.holds("d", 5.0)
    assert known.absent("d", "b", 5.0)
    assert not known.absent("d", "a", 5.0)
    assert known.entry("d", "a", 0.5) is not None
    assert known.entry("d", "a", 5.0) is None  # its size may have moved meanwhile
    assert known.left("d", 5.0) == 0.0
    assert known.names_left("d", 5.0) == 1.0  # the kernel asks again after a ttl
    assert not known.outlived("d")
    alive["lease"] = False  # broken: someone changed the directory
    assert not known.absent("d", "b", 0.5)  # within the ttl too
    assert not known.holds("d", 0.5)


def test_a_listing_that_lasted_out_its_ttl_is_remembered_as_in_use():
    known = KnownNames(ttl=1.0)
    known.listed("d", listed("a"), now=0.0)
    known.listed("e", listed("a"), now=0.0)
    assert not known.outlived("d")
    assert not known.holds("d", 2.0)
    assert known.outlived("d")
    known.forget("e")  # removed, not expired
    assert not known.outlived("e")
