"""The inode table: stable numbers, hard links, no reuse while the kernel holds one."""

from __future__ import annotations

import pytest

from quicfs.fs.inodes import ROOT_INODE, InodeTable, Unnamed


def test_server_ids_become_inodes_and_hard_links_share_them():
    t = InodeTable()
    a = t.remember("dir/a", 1000)
    assert a == 1000 and t.path(a) == "dir/a"
    b = t.remember("dir/b", 1000)  # a second name of the same file
    assert b == a
    t.removed("dir/a")
    assert t.path(a) == "dir/b"  # still reachable through its other name
    t.removed("dir/b")
    with pytest.raises(Unnamed):
        t.path(a)


def test_deleted_file_id_is_not_reused_while_held():
    t = InodeTable()
    old = t.remember("x", 77)
    t.removed("x")
    new = t.remember("x", 77)  # the server reused the id for a new file
    assert new != old and new > 77
    t.forget(old, 1)
    assert t.remember("y", 77) == 77  # once forgotten, the number is free again


def test_lookup_counts_and_forget():
    t = InodeTable()
    i = t.remember("f", 5)
    assert t.remember("f", 5) == i
    t.forget(i, 1)
    assert t.inode_of("f") == i
    t.forget(i, 1)
    assert t.inode_of("f") is None
    t.forget(ROOT_INODE, 10)
    assert t.path(ROOT_INODE) == ""


def test_rename_moves_subtree():
    t = InodeTable()
    d = t.remember("d", 10)
    f = t.remember("d/e/f", 11)
    t.renamed("d", "z")
    assert t.path(d) == "z" and t.path(f) == "z/e/f"
    assert t.inode_of("d/e/f") is None


def test_ids_without_server_numbers_are_allocated():
    t = InodeTable()
    a, b = t.remember("a"), t.remember("b")
    assert a != b and a > 1 << 61 and b > 1 << 61


def test_a_name_looked_up_last_is_the_one_used():
    """Another client renamed the file (generic/732): our old name for it is stale, the
    name just looked up is the one opens use."""
    t = InodeTable()
    f = t.remember("A/f", 300)
    t.renamed("A/f", "B/f")  # through this mount
    # ... then renamed back through another client; the kernel looks up A/f:
    assert t.remember("A/f", 300) == f
    assert t.path(f) == "A/f"
    t.removed("B/f")  # our lookup of B/f found nothing
    assert t.names(f) == ["A/f"]


def test_a_name_on_another_file_leaves_the_old_inode():
    """Another client replaced the file behind a name: the name goes to the new file's
    inode; the old one, if the kernel still holds it, has no name left."""
    t = InodeTable()
    old = t.remember("f", 400)
    new = t.remember("f", 401)
    assert new == 401 and t.inode_of("f") == 401
    assert t.names(old) == []
    with pytest.raises(Unnamed):
        t.path(old)


def test_renames_match_a_full_scan_of_the_table():
    """A rename moves the name and, for a directory, every name below it; the count of
    names below each directory that spares files the scan stays exact."""
    import random

    rng = random.Random(7)
    t = InodeTable()
    model: dict[str, int] = {"": ROOT_INODE}
    names = ["a", "b", "c"]
    for step in range(3000):
        depth = rng.randint(1, 3)
        path = "/".join(rng.choice(names) for _ in range(depth))
        op = rng.random()
        if op < 0.5:
            model[path] = t.remember(path, rng.randint(2, 60))
            model = {p: t.inode_of(p) for p in model if t.inode_of(p) is not None}
        elif op < 0.65:
            t.removed(path)
            model.pop(path, None)
        else:
            new = "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
            if new == path or new.startswith(path + "/") or not path:
                continue
            t.renamed(path, new)
            model.pop(new, None)
            moved = {new + p[len(path):]: i for p, i in model.items()
                     if p == path or p.startswith(path + "/")}
            model = {p: i for p, i in model.items()
                     if not (p == path or p.startswith(path + "/"))}
            model.update(moved)
        assert {p: t.inode_of(p) for p in model} == model, step
        assert t._by_path == model, step
        below: dict[str, int] = {}
        for p in model:
            while p:
                p = p.rpartition("/")[0]
                below[p] = below.get(p, 0) + 1
        assert t._below == {k: v for k, v in below.items() if k in below}, step


# What the server says of a file (inodes.link_view): size, creation, write and change
# times, attributes.
FILE = (11, 1, 2, 3, 0x20)
OTHER = (20, 1, 2, 3, 0x20)


def test_one_file_id_described_otherwise_is_another_file(caplog):
    """A server giving two files one id (FAT-backed shares, a hostile server): the
    second name gets a number of its own, and each name stays on its own file."""
    t = InodeTable()
    one = t.remember("one", 4242, FILE)
    two = t.remember("two", 4242, OTHER)
    assert one == 4242 and two not in (one, 0)
    assert (t.path(one), t.path(two)) == ("one", "two")
    assert t.remember("one", 4242, FILE) == one and t.remember("two", 4242, OTHER) == two
    t.remember("three", 4242, (1, 1, 1, 1, 0))
    warned = [r for r in caplog.records if "file id" in r.getMessage()]
    assert len(warned) == 1  # logged once
    assert t.peek("four", 4242, OTHER) == 0  # not given out yet, and not 4242


def test_hard_links_share_an_inode_when_described_alike():
    t = InodeTable()
    a = t.remember("a", 500, FILE)
    assert t.rival("b", 500, FILE) is None and t.peek("b", 500, FILE) == 500
    assert t.remember("b", 500, FILE) == a
    assert sorted(t.names(a)) == ["a", "b"]


def test_a_stale_description_is_asked_again_before_a_new_name_is_split_off():
    """Written since it was seen: the caller asks the other name again (rival, saw)."""
    t = InodeTable()
    a = t.remember("a", 600, FILE)
    assert t.rival("b", 600, OTHER) == "a"
    t.saw(a, OTHER)  # the server now says of 'a' what it says of 'b'
    assert t.rival("b", 600, OTHER) is None
    assert t.remember("b", 600, OTHER) == a


def test_file_id_zero_is_no_id():
    t = InodeTable()
    a, b = t.remember("a", 0, FILE), t.remember("b", 0, FILE)
    assert a != b and a > ROOT_INODE and b > ROOT_INODE


def test_a_link_made_here_joins_its_inode_whatever_id_it_gets():
    t = InodeTable()
    a = t.remember("a", 0, FILE)
    t.linked("b", a, FILE)
    assert t.inode_of("b") == a and sorted(t.names(a)) == ["a", "b"]
    t.forget(a, 1)
    assert t.inode_of("b") == a  # one reference left (the link's)
