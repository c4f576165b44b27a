"""The man pages, made from their Markdown sources: docs/quicfs.md becomes man/quicfs.1
and docs/mount.quicfs.md man/mount.quicfs.8 (`make man`; `make install` puts them where
man(1) looks). The Markdown is the one source: the roff is committed, so that `man -l
man/quicfs.1` reads it in any checkout, and tests/unit/test_manual.py fails when it is not
what this script makes of the Markdown.

    python3 tools/manpage.py            # write every page of PAGES
    python3 tools/manpage.py --check    # exit 1 naming the pages that are not up to date

Only the Markdown those pages use, and anything else is an error rather than a guess: a
``# name(section)`` title, ``##`` and ``###`` headings, paragraphs, ``- `` and ``1. ``
lists (continued by indented lines), two-column tables (each row becomes a tagged
paragraph: the first cell the tag), code indented by four spaces or fenced, and inline
code (bold, as man-pages(7) sets what is typed literally), ``**bold**``, ``*italic*`` and
``[text](target)``. Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Markdown source -> the roff page made of it.
PAGES = {
    "docs/quicfs.md": "man/quicfs.1",
    "docs/mount.quicfs.md": "man/mount.quicfs.8",
}

_TITLE = re.compile(r"# ([\w.-]+)\((\d)\)$")
_LIST_ITEM = re.compile(r"(- |\d+\. )")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"
                     r"|\[([^\]]+)\]\(([^)\s]+)\)")


class MarkdownError(ValueError):
    pass


def _escape(text: str, *, literal: bool = False) -> str:
    """Text as roff prints it: a backslash is ``\\e``; outside ASCII, ``\\[uXXXX]``; in
    what is typed literally, a minus sign ``\\-`` (a hyphen would not paste as one)."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\e")
        elif c == "-" and literal:
            out.append("\\-")
        elif ord(c) > 0x7E:
            out.append(f"\\[u{ord(c):04X}]")
        else:
            out.append(c)
    return "".join(out)


def inline(text: str) -> str:
    """One line of Markdown text as roff text (fonts, escapes; no request)."""
    if text.count("`") % 2:
        raise MarkdownError(f"inline code must open and close on one line: {text!r}")
    out = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(_escape(text[pos:m.start()]))
        code, bold, italic, label, target = m.groups()
        if code is not None:
            out.append(f"\\fB{_escape(code, literal=True)}\\fP")
        elif bold is not None:
            out.append(f"\\fB{inline(bold)}\\fP")
        elif italic is not None:
            out.append(f"\\fI{inline(italic)}\\fP")
        else:
            shown = inline(label)
            # A page of the checkout (docs/*.md) is named as it is; a web page keeps its
            # address, which a terminal cannot follow otherwise.
            out.append(shown if "://" not in target
                       else f"{shown} <{_escape(target, literal=True)}>")
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _line(text: str) -> str:
    """A line of running text: one that starts like a request is made plain text."""
    return "\\&" + text if text.startswith((".", "'")) else text


def _cells(row: str) -> list[str]:
    inner = row.strip()
    if not (inner.startswith("|") and inner.endswith("|")):
        raise MarkdownError(f"table row does not start and end with '|': {row!r}")
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner[1:-1])]


def convert(markdown: str, *, version: str, source: str) -> str:
    lines = markdown.splitlines()
    if not lines or not (title := _TITLE.match(lines[0])):
        raise MarkdownError("the first line must be '# name(section)'")
    name, section = title.groups()
    out = [
        f'.TH {name.upper()} {section} "" "quicfs {version}" "quicfs manual"',
        f'.\\" Made by tools/manpage.py from {source}: edit that, then run `make man`.',
        ".nh",
        ".ad l",
    ]
    heading = ""
    fresh = True  # just after a heading: a paragraph needs no .PP
    i = 1

    def paragraph_break() -> None:
        nonlocal fresh
        if not fresh:
            out.append(".PP")
        fresh = False

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("## "):
            heading = line[3:].strip()
            out.append(f".SH {inline(heading.upper())}")
            fresh = True
            i += 1
        elif line.startswith("### "):
            out.append(f".SS {inline(line[4:].strip())}")
            fresh = True
            i += 1
        elif line.startswith("#"):
            raise MarkdownError(f"line {i + 1}: only ## and ### headings after the title")
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       None)
            if end is None:
                raise MarkdownError(f"line {i + 1}: a fenced block that does not end")
            paragraph_break()
            _code(out, lines[i + 1:end])
            i = end + 1
        elif line.startswith("    "):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            paragraph_break()
            _code(out, [text[4:] for text in lines[i:j]])
            i = j
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            rows = [_cells(text) for text in lines[i:j]]
            if len(rows) < 3 or not all(set(c) <= set("-: ") for c in rows[1]):
                raise MarkdownError(f"line {i + 1}: a table is a header, a rule, and rows")
            if any(len(row) != 2 for row in rows):
                raise MarkdownError(f"line {i + 1}: only two-column tables (tag, text)")
            for tag, text in rows[2:]:
                out += [".TP", _line(inline(tag)), _line(inline(text))]
            fresh = False
            i = j
        elif _LIST_ITEM.match(line):
            bullet = _LIST_ITEM.match(line)
            assert bullet is not None
            mark = "\\(bu" if bullet.group(1) == "- " else bullet.group(1).strip()
            item = [line[bullet.end():]]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                item.append(lines[i].strip())
                i += 1
            out.append(f".IP {mark} 4")
            out += [_line(inline(text)) for text in item]
            fresh = False
        else:
            paragraph_break()
            text = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
                text.append(lines[i].strip())
                i += 1
            if heading.lower() == "name":
                # whatis(1) and mandb(8) read "name \- what it is".
                names, dash, what = " ".join(text).partition(" \u2014 ")
                if not dash:
                    raise MarkdownError("the Name section is 'name \u2014 what it is'")
                out.append(_line(f"{inline(names)} \\- {inline(what)}"))
            else:
                out += [_line(inline(t)) for t in text]
    return "\n".join(out) + "\n"


def _starts_block(line: str) -> bool:
    return line.startswith(("#", "    ", "```", "|")) or bool(_LIST_ITEM.match(line))


def _code(out: list[str], block: list[str]) -> None:
    out += [".RS 4", ".nf"]
    out += [_line(_escape(text, literal=True)) for text in block]
    out += [".fi", ".RE"]


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def render(source: str) -> str:
    """The roff page made of the Markdown at ``source`` (relative to the checkout)."""
    return convert((ROOT / source).read_text(encoding="utf-8"), version=version(),
                   source=source)


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: tools/manpage.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for source, page in PAGES.items():
        text = render(source)
        path = ROOT / page
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if check:
            stale.append(page)
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {page}")
    if stale:
        print(f"not up to date with their Markdown: {', '.join(stale)} (run make man)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
