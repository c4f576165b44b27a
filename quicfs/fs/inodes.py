"""Inode numbers for paths: stable, never handed out twice while the kernel holds them.

Pure bookkeeping (no pyfuse3, no I/O). The server's file id is the inode number when it
gives one (MS-FSCC FileInternalInformation / directory entry FileId): stable across
lookups and shared by hard links. A number the kernel still holds for another path is
never reused for a different file: a fresh one is allocated instead. Lookup counts follow
the kernel's (FUSE ``lookup`` adds one, ``forget`` takes away); a path is dropped only
when its count reaches zero.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT_INODE = 1
#: Numbers we allocate ourselves live above any server file id we expect.
_FIRST_LOCAL = 1 << 62


@dataclass
class _Entry:
    path: str
    lookups: int = 0


class InodeTable:
    def __init__(self) -> None:
        self._by_inode: dict[int, _Entry] = {ROOT_INODE: _Entry("", 1)}
        self._by_path: dict[str, int] = {"": ROOT_INODE}
        self._next_local = _FIRST_LOCAL

    def path(self, inode: int) -> str:
        """The path of a known inode; KeyError if the kernel sent one we never gave."""
        return self._by_inode[inode].path

    def inode_of(self, path: str) -> int | None:
        return self._by_path.get(path)

    def remember(self, path: str, file_id: int = 0) -> int:
        """The inode for ``path`` (looked up now), counting one kernel reference."""
        inode = self._by_path.get(path)
        if inode is None:
            inode = file_id if self._usable(file_id, path) else self._allocate()
            self._by_inode[inode] = _Entry(path)
            self._by_path[path] = inode
        self._by_inode[inode].lookups += 1
        return inode

    def peek(self, path: str, file_id: int = 0) -> int:
        """The inode ``path`` has or would get, without a kernel reference (readdir)."""
        inode = self._by_path.get(path)
        if inode is not None:
            return inode
        return file_id if self._usable(file_id, path) else 0

    def _usable(self, file_id: int, path: str) -> bool:
        if file_id <= ROOT_INODE or file_id >= _FIRST_LOCAL:
            return False
        held = self._by_inode.get(file_id)
        return held is None or held.path == path

    def _allocate(self) -> int:
        inode = self._next_local
        self._next_local += 1
        return inode

    def forget(self, inode: int, count: int) -> None:
        entry = self._by_inode.get(inode)
        if entry is None or inode == ROOT_INODE:
            return
        entry.lookups -= count
        if entry.lookups <= 0:
            del self._by_inode[inode]
            if self._by_path.get(entry.path) == inode:
                del self._by_path[entry.path]

    def removed(self, path: str) -> None:
        """``path`` is gone on the server: a new file there must get its own inode."""
        inode = self._by_path.pop(path, None)
        if inode is not None and inode in self._by_inode:
            self._by_inode[inode].path = f"\0deleted\0{inode}"

    def renamed(self, old: str, new: str) -> None:
        """Move ``old`` and everything below it to ``new`` (open handles stay valid)."""
        self.removed(new)
        prefix = old + "/"
        moves = [(p, i) for p, i in self._by_path.items() if p == old or p.startswith(prefix)]
        for p, _ in moves:
            del self._by_path[p]
        for p, inode in moves:
            target = new + p[len(old):]
            self._by_path[target] = inode
            self._by_inode[inode].path = target

    def __len__(self) -> int:
        return len(self._by_inode)


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
