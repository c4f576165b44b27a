"""``mount.quicfs``: the filesystem arrives with the FUSE layer; until then it says so."""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: mount(8) exit code for "mount failure".
EX_FAIL = 32


def main(argv: Sequence[str] | None = None) -> int:
    print("mount.quicfs: mounting is not implemented yet; use 'quicfs ls/get/put'",
          file=sys.stderr)
    return EX_FAIL


if __name__ == "__main__":
    sys.exit(main())
