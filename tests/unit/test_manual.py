"""The manuals against the code (issue 24): every option the option parser takes is in
mount.quicfs(8), and every option there (and in the README's table) is taken, in the form
documented; every `quicfs` command and flag of its argparse parser is in quicfs(1) with
its choices and defaults, and every one there exists; likewise mount.quicfs's own flags;
the exit codes the commands use are listed; and the pages are what tools/manpage.py makes
of their Markdown (docs/quicfs.md, docs/mount.quicfs.md) and render without a warning.

The pages are read as roff, as man(1) shows them: an option counts as documented when it
is the tag of an entry (``.TP``) in OPTIONS (or, for a command, in its subsection of
COMMANDS), set in bold as the Markdown's inline code makes it.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import subprocess
from pathlib import Path

import pytest

from quicfs import options
from quicfs.cli import errors as cli_errors
from quicfs.cli import main as cli_main
from quicfs.cli import mount as cli_mount
from quicfs.errors import UsageError
from tools import manpage

ROOT = Path(__file__).resolve().parents[2]
QUICFS_1 = ROOT / "man" / "quicfs.1"
MOUNT_8 = ROOT / "man" / "mount.quicfs.8"

_BOLD = re.compile(r"\\fB(.*?)\\fP")
_OPTION = re.compile(r"(x-\*|[a-z_][a-z0-9_]*)(=?)")


def _plain(roff: str) -> str:
    text = re.sub(r"\\\[u([0-9A-F]{4})\]", lambda m: chr(int(m.group(1), 16)), roff)
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")


def _sections(page: Path) -> dict[str, list[str]]:
    """Each ``.SH`` section's lines, by its name."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith(".SH "):
            current = out.setdefault(_plain(line[4:]).strip('"'), [])
        elif current is not None:
            current.append(line)
    return out


def _subsections(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = out.setdefault("", [])
    for line in lines:
        if line.startswith(".SS "):
            current = out.setdefault(_plain(line[4:]), [])
        else:
            current.append(line)
    return out


def _entries(lines: list[str]) -> list[tuple[str, str]]:
    """(tag, text) of each ``.TP`` entry, in roff."""
    entries = []
    for i, line in enumerate(lines):
        if line == ".TP":
            body = []
            for text in lines[i + 2:]:
                if text.startswith("."):
                    break
                body.append(text)
            entries.append((lines[i + 1], " ".join(body)))
    return entries


def _bold(tag: str) -> list[str]:
    return [_plain(b) for b in _BOLD.findall(tag)]


def _flags(entries: list[tuple[str, str]]) -> set[str]:
    """The command-line flags that tag the entries (``--cert FILE`` names --cert)."""
    return {b.split()[0] for tag, _ in entries for b in _bold(tag) if b.startswith("-")}


def _mount_options(entries: list[tuple[str, str]]) -> dict[str, set[bool]]:
    """Option name -> the forms it is documented in (True: ``name=``, False: a flag)."""
    found: dict[str, set[bool]] = {}
    for tag, _ in entries:
        for word in _bold(tag):
            if word.startswith("-"):
                continue
            m = _OPTION.match(word)
            assert m is not None, f"not an option name: {word!r} (tag {_plain(tag)!r})"
            found.setdefault(m.group(1), set()).add(bool(m.group(2)))
    return found


# ---------------------------------------------------------------- mount options

def _parser_literals() -> tuple[set[str], set[str]]:
    """Names parse_options takes outside its tables: those it compares an option's name
    with, and the prefixes it takes (``name.startswith("x-")``)."""
    names: set[str] = set()
    prefixes: set[str] = set()
    tree = ast.parse(inspect.getsource(options.parse_options))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) \
                and node.left.id == "name":
            for right in node.comparators:
                if isinstance(right, ast.Constant) and isinstance(right.value, str):
                    names.add(right.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "startswith" and isinstance(node.func.value, ast.Name) \
                and node.func.value.id == "name":
            prefixes |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    return names, prefixes


def accepted_mount_options() -> dict[str, set[bool]]:
    """Every option quicfs/options.py takes: name -> the forms its tables give it (True:
    ``name=VALUE``, False: a flag; none known for a name taken outside the tables)."""
    accepted: dict[str, set[bool]] = {name: {True} for name in options._VALUES}
    for table in (options._FLAGS, options.VFS_FLAGS, options._VFS_ALLOWS,
                  options._IGNORED):
        for name in table:
            accepted.setdefault(name, set()).add(False)
    names, prefixes = _parser_literals()
    for name in names | {prefix + "*" for prefix in prefixes}:
        accepted.setdefault(name, set())
    return accepted


def documented_mount_options() -> dict[str, set[bool]]:
    return _mount_options(_entries(_sections(MOUNT_8)["OPTIONS"]))


def test_every_option_the_parser_takes_is_in_mount_quicfs_8() -> None:
    documented = documented_mount_options()
    missing = sorted(set(accepted_mount_options()) - set(documented))
    assert missing == [], f"options quicfs/options.py takes that mount.quicfs(8) does " \
        f"not document (add them to docs/mount.quicfs.md, then make man): {missing}"


def test_options_are_documented_in_the_form_the_parser_takes_them() -> None:
    documented = documented_mount_options()
    wrong = [f"{name}{'=...' if form else ''}"
             for name, forms in accepted_mount_options().items()
             for form in forms if form not in documented.get(name, {form})]
    assert wrong == [], f"mount.quicfs(8) does not document these forms: {wrong}"


def _refusal(option: str) -> str | None:
    """What parse_options says against ``option`` when it does not take it so."""
    try:
        options.parse_options(option)
    except UsageError as exc:
        text = str(exc)
        if text.startswith(("unknown option", "option ")) and "fallback=" not in text:
            return text  # unknown, needs a value, takes no value
    return None  # taken (a bad value for a real option is still the option taken)


def _check_taken(documented: dict[str, set[bool]], where: str) -> None:
    refused = []
    for name, forms in documented.items():
        for value in forms:
            option = (name[:-1] + "documented" if name.endswith("*") else name) \
                + ("=1" if value else "")
            why = _refusal(option)
            if why is not None:
                refused.append(f"{option}: {why}")
    assert refused == [], f"{where} documents options the parser refuses: {refused}"


def test_every_option_in_mount_quicfs_8_is_taken() -> None:
    _check_taken(documented_mount_options(), "mount.quicfs(8)")


def test_every_option_in_the_readme_table_is_taken() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    documented: dict[str, set[bool]] = {}
    for row in rows:
        first_cell = row.split(" | ")[0]
        for word in re.findall(r"`([^`]+)`", first_cell):
            m = _OPTION.match(word)
            if m is not None and not word.startswith("-"):
                documented.setdefault(m.group(1), set()).add(bool(m.group(2)))
    assert "transport" in documented  # the table is found
    _check_taken(documented, "README.md's options table")


def test_quicfs_1_names_only_options_the_parser_takes() -> None:
    """quicfs(1) lists the connection options by name, pointing at mount.quicfs(8)."""
    text = "\n".join(_sections(QUICFS_1)["OPTIONS"])
    commands = set(_commands(cli_main._parser()))
    named: dict[str, set[bool]] = {}
    for word in _bold(text):
        if not word.startswith("-") and word not in commands \
                and (m := _OPTION.fullmatch(word)):
            named.setdefault(m.group(1), set()).add(bool(m.group(2)))
    assert "transport" in named
    _check_taken(named, "quicfs(1)")


# ---------------------------------------------------------------- command lines

def _commands(parser: argparse.ArgumentParser, prefix: str = ""
              ) -> dict[str, argparse.ArgumentParser]:
    """Each command that does something, by its words (``cert new``), with its parser."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words = f"{prefix} {name}".strip()
                nested = _commands(sub, words)
                out.update(nested or {words: sub})
    return out


def _parser_flags(parser: argparse.ArgumentParser, *, with_help: bool) -> set[str]:
    return {flag for action in parser._actions
            if action.help != argparse.SUPPRESS
            and (with_help or not isinstance(action, argparse._HelpAction))
            for flag in action.option_strings}


def _command_sections() -> dict[str, list[str]]:
    sections = _subsections(_sections(QUICFS_1)["COMMANDS"])
    sections.pop("", None)
    return sections


def test_every_quicfs_command_is_in_quicfs_1_and_no_other() -> None:
    parser_commands = set(_commands(cli_main._parser()))
    documented = set(_command_sections())
    assert sorted(parser_commands - documented) == [], "commands quicfs(1) lacks " \
        "(add them to docs/quicfs.md, then make man)"
    assert sorted(documented - parser_commands) == [], "quicfs(1) documents commands " \
        "that quicfs does not have"


def test_the_global_flags_are_in_quicfs_1() -> None:
    documented = _flags(_entries(_sections(QUICFS_1)["OPTIONS"]))
    assert documented == _parser_flags(cli_main._parser(), with_help=True)


@pytest.mark.parametrize("command", sorted(_commands(cli_main._parser())))
def test_each_command_s_flags_choices_and_defaults_are_in_quicfs_1(command: str) -> None:
    parser = _commands(cli_main._parser())[command]
    lines = _command_sections().get(command)
    assert lines is not None, f"quicfs(1) has no subsection for {command}"
    entries = _entries(lines)
    assert _flags(entries) == _parser_flags(parser, with_help=False)
    text = _plain(" ".join(lines))
    by_flag = {b.split()[0]: _plain(tag + " " + body)
               for tag, body in entries for b in _bold(tag) if b.startswith("-")}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        where = by_flag.get(action.option_strings[0], "") if action.option_strings else text
        for choice in action.choices or ():
            assert str(choice) in where, f"{command}: choice {choice} of " \
                f"{action.option_strings or action.dest} is not documented"
        default = action.default
        if action.option_strings and default not in (None, False, [], "", argparse.SUPPRESS):
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert "default" in where and shown in where.split("default", 1)[1], \
                f"{command}: {action.option_strings[0]}'s default {shown} is not documented"


def test_mount_quicfs_flags_are_in_mount_quicfs_8() -> None:
    documented = _flags(_entries(_sections(MOUNT_8)["OPTIONS"]))
    assert documented == _parser_flags(cli_mount._parser(), with_help=True)


def _exit_codes(page: Path) -> set[int]:
    return {int(_plain(tag)) for tag, _ in _entries(_sections(page)["EXIT STATUS"])}


def test_exit_codes_are_documented() -> None:
    argparse_usage = 2  # argparse's own exit status for a command line it refuses
    assert {0, cli_errors.EXIT_FAILURE, cli_errors.EXIT_USAGE, 130,
            argparse_usage} <= _exit_codes(QUICFS_1)
    # (mount.quicfs answers a command line argparse refuses with EX_USAGE too: mount(8)
    # keeps 2 for its own errors.)
    assert {0, cli_mount.EX_USAGE, cli_mount.EX_FAIL} == _exit_codes(MOUNT_8)


# ---------------------------------------------------------------- the pages themselves

@pytest.mark.parametrize("source", sorted(manpage.PAGES))
def test_man_page_is_made_from_its_markdown(source: str) -> None:
    page = ROOT / manpage.PAGES[source]
    assert page.read_text(encoding="utf-8") == manpage.render(source), \
        f"{page.name} is not what {source} makes: run make man"


@pytest.mark.parametrize("page", [QUICFS_1, MOUNT_8], ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert "NAME" in proc.stdout and "OPTIONS" in proc.stdout


# ---------------------------------------------------------------- the gateway's unit file

def test_the_gateway_unit_runs_a_command_line_quicfs_takes() -> None:
    """contrib/quicfs-gateway.service: its ExecStart, with %d and $GATEWAY_ARGS as systemd
    expands them, is a gateway command line the parser takes."""
    unit = (ROOT / "contrib" / "quicfs-gateway.service").read_text(encoding="utf-8")
    settings = [line.split("=", 1) for line in unit.splitlines()
                if "=" in line and not line.startswith("#")]
    exec_start = next(value for key, value in settings if key == "ExecStart")
    env = dict(value.strip('"').split("=", 1) for key, value in settings
               if key == "Environment")
    words = []
    for word in exec_start.replace("%d", "/run/credentials/quicfs-gateway.service").split():
        words += env[word[1:]].split() if word.startswith("$") else [word]
    assert words[0] == "/usr/local/bin/quicfs"  # where make install links it
    args = cli_main._parser().parse_args(words[1:])
    assert args.command == "gateway"
    assert args.listen.endswith(":443") and args.cert.endswith("/cert")
