"""Inode numbers for paths: stable, never handed out twice while the kernel holds them.

Pure bookkeeping (no pyfuse3, no I/O). The server's file id is the inode number when it
gives one (MS-FSCC FileInternalInformation / directory entry FileId): stable across
lookups and shared by hard links, so one inode may have several names. A number is never
reused for a different file while the kernel still holds it: a file id whose old owner
was deleted but not yet forgotten gets a fresh local number instead. Lookup counts follow
the kernel's (FUSE ``lookup`` adds one, ``forget`` takes away); an inode is dropped only
when its count reaches zero.

A file id alone does not make two names one file: FAT-backed shares give ids that are not
unique, some servers give 0 (no id at all), and a hostile one may give any. A name joins
an inode that another name holds only when what the server says of it matches what it
said last of that inode, as for a hard link, which shares all of it (type, size, times,
attributes: ``Seen``); otherwise it gets a number of its own. Two names wrongly on one
inode would serve one file's bytes under the other's name.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quicfs.errors import QuicfsError

if TYPE_CHECKING:
    from quicfs.client.open import FileStat

log = logging.getLogger(__name__)

ROOT_INODE = 1


class Unnamed(QuicfsError):
    """An inode with no name left here: removed, or renamed away by another client."""

    errno = errno.ENOENT

#: Numbers we allocate ourselves live above any server file id we expect.
_FIRST_LOCAL = 1 << 62

#: What every name of one file (its hard links) has in common, as the server says it:
#: size, creation, write and change times, attributes (the type among them). Not the
#: access time: a read between two lookups changes it.
Seen = tuple[int, int, int, int, int]


def link_view(st: FileStat) -> Seen:
    """What the server says of ``st``'s file that each of its hard links must match."""
    return (st.size, st.creation_ns, st.mtime_ns, st.ctime_ns, int(st.attributes))


@dataclass
class _Entry:
    paths: list[str] = field(default_factory=list)  # its names; empty once all are gone
    lookups: int = 0
    deleted: bool = False
    #: What the server said of it last (None: nothing yet, any name with its id joins).
    seen: Seen | None = None


class InodeTable:
    def __init__(self, root: str = "") -> None:
        """``root``: the share's directory mounted ('' for the share itself)."""
        self._by_inode: dict[int, _Entry] = {ROOT_INODE: _Entry([root], 1)}
        self._by_path: dict[str, int] = {root: ROOT_INODE}
        #: How many paths of ``_by_path`` lie below each directory path: a rename of
        #: one with none below it (a file, mostly) moves one name, without a scan.
        self._below: dict[str, int] = {}
        self._next_local = _FIRST_LOCAL
        self._told_shared_id = False

    def _add(self, path: str, inode: int) -> None:
        if path not in self._by_path:
            for parent in _ancestors(path):
                self._below[parent] = self._below.get(parent, 0) + 1
        self._by_path[path] = inode

    def _drop(self, path: str) -> int | None:
        inode = self._by_path.pop(path, None)
        if inode is not None:
            for parent in _ancestors(path):
                left = self._below[parent] - 1
                if left:
                    self._below[parent] = left
                else:
                    del self._below[parent]
        return inode

    def path(self, inode: int) -> str:
        """A current name of ``inode``; :class:`Unnamed` if it has none (never given, or
        gone)."""
        entry = self._by_inode.get(inode)
        if entry is None or not entry.paths:
            raise Unnamed(f"inode {inode} has no name")
        return entry.paths[0]

    def inode_of(self, path: str) -> int | None:
        return self._by_path.get(path)

    def names(self, inode: int) -> list[str]:
        entry = self._by_inode.get(inode)
        return list(entry.paths) if entry is not None else []

    def known(self, inode: int) -> bool:
        """The kernel still holds ``inode`` (it has not forgotten every lookup)."""
        return inode in self._by_inode

    def remember(self, path: str, file_id: int = 0, now: Seen | None = None) -> int:
        """The inode for ``path`` (looked up now, the server saying ``now`` of it),
        counting one kernel reference.

        Names change behind our back (another client renames, or replaces a file): the
        name just looked up becomes the inode's first, the one ``path`` gives, so a file
        renamed elsewhere is opened by its new name, not the one we saw last; and a name
        now on another file (by its file id) leaves the inode it was on."""
        inode = self._by_path.get(path)
        if inode is not None and ROOT_INODE < file_id < _FIRST_LOCAL \
                and ROOT_INODE < inode < _FIRST_LOCAL and inode != file_id:
            self.removed(path)
            inode = None
        if inode is None:
            inode = self._choose(path, file_id, now)
            entry = self._by_inode.setdefault(inode, _Entry())
            self._add(path, inode)
        else:
            entry = self._by_inode[inode]
        if path in entry.paths:
            entry.paths.remove(path)
        entry.paths.insert(0, path)
        entry.lookups += 1
        if now is not None:
            entry.seen = now
        return inode

    def linked(self, path: str, inode: int, now: Seen | None = None) -> None:
        """``path`` is a hard link to ``inode`` made through this mount (FUSE ``link``
        counts one kernel reference): it joins whatever id the server gave it."""
        entry = self._by_inode[inode]
        self.removed(path)
        self._add(path, inode)
        entry.paths.insert(0, path)
        entry.lookups += 1
        entry.deleted = False
        if now is not None:
            entry.seen = now

    def peek(self, path: str, file_id: int = 0, now: Seen | None = None) -> int:
        """The inode ``path`` has or would get, without a kernel reference (readdir);
        0 for a number not given yet."""
        inode = self._by_path.get(path)
        if inode is not None:
            return inode
        return file_id if self._id_usable(file_id, now) else 0

    def rival(self, path: str, file_id: int, now: Seen) -> str | None:
        """A name of the live inode ``file_id`` that ``path`` (not known yet) would join
        but for what the server says of it: what was seen of that inode may only be
        stale (a write since), so the caller may ask the server about that name again
        (``saw``) before ``remember`` decides."""
        if path in self._by_path or self._id_usable(file_id, now):
            return None
        held = self._by_inode.get(file_id)
        if held is None or held.deleted or not held.paths or held.seen is None:
            return None
        return held.paths[0]

    def saw(self, inode: int, now: Seen) -> None:
        """The server says ``now`` of ``inode`` (asked through one of its names)."""
        entry = self._by_inode.get(inode)
        if entry is not None:
            entry.seen = now

    def _choose(self, path: str, file_id: int, now: Seen | None) -> int:
        if self._id_usable(file_id, now):
            return file_id  # new, or another name of a live file (a hard link)
        held = self._by_inode.get(file_id)
        if held is not None and not held.deleted and not self._told_shared_id:
            self._told_shared_id = True
            log.warning("the server gives %r the file id of %r, which it describes "
                        "otherwise: each keeps an inode of its own (this is logged once)",
                        path, held.paths[0] if held.paths else "a deleted file")
        inode = self._next_local
        self._next_local += 1
        return inode

    def _id_usable(self, file_id: int, now: Seen | None = None) -> bool:
        if file_id <= ROOT_INODE or file_id >= _FIRST_LOCAL:
            return False  # 0: no id at all (FAT); 1: the root's
        held = self._by_inode.get(file_id)
        if held is None:
            return True
        return not held.deleted and (now is None or held.seen is None or held.seen == now)

    def forget(self, inode: int, count: int) -> None:
        entry = self._by_inode.get(inode)
        if entry is None or inode == ROOT_INODE:
            return
        entry.lookups -= count
        if entry.lookups <= 0:
            del self._by_inode[inode]
            for p in entry.paths:
                if self._by_path.get(p) == inode:
                    self._drop(p)

    def removed(self, path: str) -> None:
        """The name ``path`` is gone on the server. When a file loses its last name, a
        new file must not inherit its inode while the kernel still holds it."""
        inode = self._drop(path)
        if inode is None or inode not in self._by_inode:
            return
        entry = self._by_inode[inode]
        if path in entry.paths:
            entry.paths.remove(path)
        if not entry.paths:
            entry.deleted = True

    def renamed(self, old: str, new: str) -> None:
        """Move ``old`` and everything below it to ``new`` (open handles stay valid)."""
        self.removed(new)
        moves: list[tuple[str, int]] = []
        if old in self._by_path:
            moves.append((old, self._by_path[old]))
        if self._below.get(old):
            prefix = old + "/"
            moves += [(p, i) for p, i in self._by_path.items() if p.startswith(prefix)]
        for p, _ in moves:
            self._drop(p)
        for p, inode in moves:
            target = new + p[len(old):]
            self._add(target, inode)
            entry = self._by_inode[inode]
            entry.paths = [target if q == p else q for q in entry.paths]

    def __len__(self) -> int:
        return len(self._by_inode)


def _ancestors(path: str) -> list[str]:
    """The directory paths above ``path``, '' (the share) last; none for '' itself."""
    found = []
    while path:
        path = path.rpartition("/")[0]
        found.append(path)
    return found


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
