"""The import rules of docs/design.md, checked on the source: each layer imports only the
layers below it, and each outside library stays in the one place that speaks it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quicfs"

#: What each layer of quicfs may import of quicfs (besides itself): the layers below it
#: and the small pure helpers beside them.
ALLOWED = {
    "smb2": set(),
    "transport": {"errors", "options", "private", "refusals"},
    "client": {"smb2", "transport", "errors", "options", "url"},
    "fs": {"client", "smb2", "errors", "options", "refusals"},
    # `quicfs probe` asks both transports and reads a NEGOTIATE: above them, below cli.
    "probe": {"transport", "client", "smb2", "errors", "options", "url", "cert"},
}
#: Inside transport/, the client reaches only the transport interface and the race.
CLIENT_TRANSPORT = {"quicfs.transport.base", "quicfs.transport.connect"}

#: Outside libraries, and the only places that import them.
LIBRARIES = {
    "qh3": ("quicfs.transport.quic.",),
    "aioquic": ("quicfs.transport.quic.engine_aioquic", "quicfs.transport.aioquic_cc"),
    "spnego": ("quicfs.client.auth",),
    "gssapi": ("quicfs.client.auth",),
    "krb5": ("quicfs.client.auth",),
    "pyfuse3": ("quicfs.fs.", "quicfs.cli.mount"),
}


def _modules() -> list[tuple[str, set[str]]]:
    """Every module of quicfs with every module it imports (at any depth of its code)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
        found.append((name, imported))
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_lies_below_it(layer: str) -> None:
    wrong = []
    for module, imported in MODULES:
        if _layer(module) != layer:
            continue
        for name in imported:
            if not name.startswith("quicfs.") or not _is_module(name):
                continue
            other = _layer(name)
            if other == layer or other in ALLOWED[layer]:
                if layer == "client" and other == "transport" and name not in CLIENT_TRANSPORT:
                    wrong.append(f"{module} imports {name}")
                continue
            wrong.append(f"{module} imports {name}")
    assert wrong == []


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_an_outside_library_is_spoken_in_one_place(library: str) -> None:
    places = LIBRARIES[library]
    wrong = [f"{module} imports {library}" for module, imported in MODULES
             if any(n == library or n.startswith(library + ".") for n in imported)
             and not module.startswith(places)]
    assert wrong == []


def test_the_library_does_not_import_the_tools() -> None:
    """tools/ (the test Samba, the demo) is not in the wheel: nothing installed needs it."""
    wrong = [module for module, imported in MODULES
             if any(n == "tools" or n.startswith("tools.") for n in imported)]
    assert wrong == []


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of quicfs (``from x import Name`` adds
    ``x.Name`` too, which is a module only sometimes)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()
