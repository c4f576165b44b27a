"""`quicfs demo`: runs tools/demo.py of the source checkout this quicfs is installed from
(`pip install -e .`, as `make demo` does). The demo starts a private Samba with a Unix
user of its own, so it stays out of the package: an installed wheel has no demo, and says
so in one line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from quicfs.errors import UsageError

#: The checkout's root when quicfs runs from one: quicfs/cli/demo.py is two levels down.
CHECKOUT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    # pyproject.toml too: an installed quicfs sits in site-packages, where a "tools"
    # beside it would be some other distribution's.
    if not ((CHECKOUT / "tools" / "demo.py").is_file()
            and (CHECKOUT / "pyproject.toml").is_file()):
        raise UsageError("demo runs from a source checkout of quicfs only: clone it and run "
                         "`make demo` there")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    return importlib.import_module("tools.demo")


def cmd_demo(action: str, directory: str) -> int:
    demo = load()
    if action == "start":
        print(demo.start(Path(directory)), end="")
    else:
        print(demo.stop(Path(directory)))
    return 0
