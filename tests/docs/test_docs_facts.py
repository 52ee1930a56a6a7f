"""Facts the docs quote, checked against the code where that is cheap.

* every optional extra of ``pyproject.toml`` is in the table of ``docs/index.md``, and every ``.[extra]`` /
  ``refseg[extra]`` the docs mention exists;
* every ``refseg ...`` command line in README.md and docs/ (code blocks and inline code) names an existing
  sub-command, and each of its ``--options`` exists in that sub-command's parser.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_the_extras_table_lists_every_extra():
    text = (ROOT / "docs" / "index.md").read_text()
    listed = set(re.findall(r"^\| `\.\[([\w-]+)\]` \|", text, flags=re.M))
    assert listed == _extras(), (
        f"docs/index.md lists {sorted(listed)}, pyproject.toml has {sorted(_extras())}"
    )


def test_every_extra_the_docs_mention_exists():
    mentioned = {}
    for page in PAGES:
        for match in re.finditer(r"(?:\.|refseg)\[([\w,-]+)\]", page.read_text()):
            for extra in match.group(1).split(","):
                mentioned.setdefault(extra, page.relative_to(ROOT))
    unknown = {extra: str(page) for extra, page in mentioned.items() if extra not in _extras()}
    assert not unknown, f"extras the docs mention but pyproject.toml does not define: {unknown}"


def _command_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command path (("demo",), ("export", "onnx"), ...) and its parser, all arguments added."""
    from refseg_cli import build_parser

    found = {}

    def walk(path, parser):
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk((*path, name), sub)

    walk((), build_parser(None))
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _command_lines(text: str):
    """``refseg ...`` command lines: lines of code blocks and inline code spans that start with ``refseg``."""
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        candidates = [line] if in_block else re.findall(r"`([^`]+)`", line)
        for candidate in candidates:
            for part in re.split(r"&&|\|\||;|\|", candidate.split(" #", 1)[0]):
                part = part.strip()
                if part.startswith("refseg ") or part == "refseg":
                    yield number, part


def test_command_lines_in_the_docs_use_real_options():
    parsers = _command_parsers()
    wrong = []
    checked = 0
    for page in PAGES:
        for number, line in _command_lines(page.read_text()):
            try:
                tokens = shlex.split(line)[1:]
            except ValueError:
                tokens = line.split()[1:]
            path: tuple[str, ...] | None = ()
            for token in tokens:
                if token.startswith("-"):
                    break
                if token.startswith("<") or token.endswith(":"):  # a placeholder or a quoted error message
                    path = None
                    break
                if (*path, token) in parsers:
                    path = (*path, token)
                elif not path:
                    wrong.append(f"{page.relative_to(ROOT)}:{number}: no command 'refseg {token}' ({line})")
                    break
                else:
                    break
            if path is None:
                continue
            options = _options(parsers[path]) | _options(parsers[()])
            for token in tokens:
                name = token.split("=", 1)[0]
                if (
                    name.startswith("--")
                    and name != "--"
                    and not re.fullmatch(r"--\w*\.\.\.|--[A-Z_]+", name)
                ):
                    checked += 1
                    if name not in options:
                        where = "refseg " + " ".join(path)
                        wrong.append(f"{page.relative_to(ROOT)}:{number}: {where} has no {name} ({line})")
    assert checked > 20  # the docs quote many options; the scan must find them
    assert not wrong, "\n".join(wrong)
