"""Names known to be absent, without asking the server.

The kernel sends LOOKUP for a name before it creates it (open with O_CREAT, mkdir,
symlink, link, a rename's target): one round trip each, answered "no such name" almost
always. A directory this mount has just listed to the end, or has just made (empty),
already tells: for ``actimeo`` seconds a name it did not hold is answered absent here.
The mount's own creates and renames add to the names; a name removed stays in them (a
case-sensitive server may hold another that differs only in case), which errs on the
side of asking. Another client's new name shows within actimeo, as a negative dentry
the kernel keeps (Operations._negative) already lets it.

Names compare case-folded, so a server that ignores case (Windows, Samba with
``case sensitive = no``) never has a name called absent that it would find. Memory is
bounded: at most ``MAX_DIRS`` directories, each of at most ``MAX_NAMES`` names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

MAX_DIRS = 256
MAX_NAMES = 20_000


class KnownNames:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        #: Directory path -> (its names, case-folded; when they were all known).
        self._dirs: OrderedDict[str, tuple[set[str], float]] = OrderedDict()

    def listed(self, directory: str, names: Iterable[str], now: float) -> None:
        """``names`` are all that ``directory`` holds as of ``now``."""
        folded: set[str] = set()
        for name in names:
            folded.add(name.casefold())
            if len(folded) > MAX_NAMES:
                self._dirs.pop(directory, None)
                return
        self._dirs[directory] = (folded, now)
        self._dirs.move_to_end(directory)
        while len(self._dirs) > MAX_DIRS:
            self._dirs.popitem(last=False)

    def absent(self, directory: str, name: str, now: float) -> bool:
        """Whether ``name`` is known not to be in ``directory``."""
        known = self._dirs.get(directory)
        if known is None:
            return False
        names, since = known
        if now - since >= self.ttl:
            del self._dirs[directory]
            return False
        return name.casefold() not in names

    def added(self, path: str) -> None:
        """``path`` exists (made here, or seen)."""
        directory, _, name = path.rpartition("/")
        known = self._dirs.get(directory)
        if known is not None:
            known[0].add(name.casefold())

    def forget(self, path: str) -> None:
        """``path`` was removed or renamed: what was known of it and below goes."""
        below = path + "/"
        for directory in [d for d in self._dirs if d == path or d.startswith(below)]:
            del self._dirs[directory]


__all__ = ["KnownNames"]
