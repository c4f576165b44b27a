"""What a directory's last whole listing said, for ``actimeo``: which names it does not
hold, and the attributes of those it does.

The kernel sends LOOKUP for a name before it creates it (open with O_CREAT, mkdir,
symlink, link, a rename's target), and again for a name it knows once ``actimeo`` has
passed: one round trip each. A directory this mount has listed to the end, or has just
made (empty), already tells: for ``actimeo`` a name it did not hold is answered absent
here, and one it held with the attributes it was listed with, as the kernel itself uses a
READDIRPLUS entry. Another client's change shows within actimeo, as it does through the
kernel's own entries.

What this mount does to a name makes its listed attributes untrue: ``changed`` drops
them (the name is asked about again) and holds the name, made or seen. A name removed
stays held, which errs on the side of asking: a case-sensitive server may hold another
that differs only in case.

A listing taken under a directory lease (client/dirleases.py) keeps its names true
until the lease is lost, past ttl: absent names are answered absent, and names present
known to be there, for as long. Its attributes still last ttl only: data written
through a handle open elsewhere does not break the lease.

Names compare case-folded, so a server that ignores case (Windows, Samba with
``case sensitive = no``) never has a name called absent that it would find; attributes
answer only the exact name listed. Memory is bounded: at most ``MAX_DIRS`` directories,
each of at most ``MAX_NAMES`` names, and ``MAX_ENTRIES`` attributes in all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from quicfs.client.open import FileStat

MAX_DIRS = 256
MAX_NAMES = 20_000
MAX_ENTRIES = 100_000


@dataclass(slots=True)
class _Known:
    folded: set[str]
    #: Case-folded name -> (the name as listed, its attributes); None where two names
    #: fold alike (a case-sensitive server): neither is answered from here.
    entries: dict[str, tuple[str, FileStat] | None]
    since: float
    #: The directory lease the listing was taken under, if any.
    lease: Any = None


class KnownNames:
    def __init__(self, ttl: float, alive: Callable[[Any], bool] = lambda lease: False
                 ) -> None:
        """``alive(lease)``: whether a lease given to ``listed`` still holds."""
        self.ttl = ttl
        self._alive = alive
        self._dirs: OrderedDict[str, _Known] = OrderedDict()
        self._entries = 0
        #: Directories whose listing lasted out its ttl (most recent last): in use for
        #: longer than one, hence worth a lease.
        self._outlived: OrderedDict[str, None] = OrderedDict()

    def listed(self, directory: str, entries: Iterable[tuple[str, FileStat]],
               now: float, lease: Any = None) -> None:
        """``entries`` are all that ``directory`` holds as of ``now`` (and for as long
        as ``lease`` holds, if given)."""
        self._drop(directory)
        folded: set[str] = set()
        exact: dict[str, tuple[str, FileStat] | None] = {}
        for name, st in entries:
            key = name.casefold()
            exact[key] = None if key in folded else (name, st)
            folded.add(key)
            if len(folded) > MAX_NAMES:
                return
        self._dirs[directory] = _Known(folded, exact, now, lease)
        self._entries += len(exact)
        while len(self._dirs) > MAX_DIRS or self._entries > MAX_ENTRIES:
            self._drop(next(iter(self._dirs)))

    def holds(self, directory: str, now: float) -> bool:
        """Whether what ``directory`` holds is known: as of less than ttl ago, or under
        a lease that still holds."""
        return self._fresh(directory, now) is not None

    def since(self, directory: str) -> float:
        """When the listing of ``directory`` known now was taken."""
        return self._dirs[directory].since

    def outlived(self, directory: str) -> bool:
        """Whether a listing of ``directory`` once lasted out its ttl here."""
        return directory in self._outlived

    def absent(self, directory: str, name: str, now: float) -> bool:
        """Whether ``name`` is known not to be in ``directory``."""
        known = self._fresh(directory, now)
        return known is not None and name.casefold() not in known.folded

    def entry(self, directory: str, name: str, now: float) -> FileStat | None:
        """``name``'s attributes as ``directory`` was listed, if nothing here changed
        it since (by this spelling or another that folds alike)."""
        known = self._fresh(directory, now)
        if known is None or now - known.since >= self.ttl:
            return None
        listed = known.entries.get(name.casefold())
        return listed[1] if listed is not None and listed[0] == name else None

    def aged(self, directory: str, name: str, now: float) -> bool:
        """Whether ``name`` is listed with attributes, by that spelling, in a listing of
        ``directory`` whose names still hold but whose attributes are past ttl."""
        known = self._fresh(directory, now)
        if known is None or now - known.since < self.ttl:
            return False
        listed = known.entries.get(name.casefold())
        return listed is not None and listed[0] == name

    def left(self, directory: str, now: float) -> float:
        """Seconds until the attributes listed in ``directory`` expire (0 if none are
        known)."""
        known = self._fresh(directory, now)
        return 0.0 if known is None else max(0.0, known.since + self.ttl - now)

    def names_left(self, directory: str, now: float) -> float:
        """Seconds an answer from ``directory``'s names may be kept (ttl under a lease:
        the kernel asks again then, and is answered again from here)."""
        known = self._fresh(directory, now)
        if known is None:
            return 0.0
        # (_fresh kept a leased listing only while its lease holds.)
        return self.ttl if known.lease is not None else known.since + self.ttl - now

    def changed(self, path: str) -> None:
        """``path`` exists (made or seen here) or was changed here: its name is held,
        its listed attributes go."""
        directory, _, name = path.rpartition("/")
        known = self._dirs.get(directory)
        if known is not None:
            key = name.casefold()
            known.folded.add(key)
            if key in known.entries:
                del known.entries[key]
                self._entries -= 1

    def forget(self, path: str) -> None:
        """``path`` was removed or renamed: what was known of it and below goes."""
        self.changed(path)
        below = path + "/"
        for directory in [d for d in self._dirs if d == path or d.startswith(below)]:
            self._drop(directory)

    def _fresh(self, directory: str, now: float) -> _Known | None:
        known = self._dirs.get(directory)
        if known is None:
            return None
        expired = now - known.since >= self.ttl
        if (not expired) if known.lease is None else self._alive(known.lease):
            return known
        # Expired, or its lease lost: a break says the directory changed.
        self._drop(directory)
        if not expired:
            return None
        self._outlived[directory] = None
        self._outlived.move_to_end(directory)
        while len(self._outlived) > MAX_DIRS * 4:
            self._outlived.popitem(last=False)
        return None

    def _drop(self, directory: str) -> None:
        known = self._dirs.pop(directory, None)
        if known is not None:
            self._entries -= len(known.entries)


__all__ = ["KnownNames"]
