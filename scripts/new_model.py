#!/usr/bin/env python
"""Scaffold a new refseg model: ``python scripts/new_model.py NAME``.

Copies the template under ``scripts/new_model_template/`` into the repository, renaming ``template_model`` to
``NAME`` and ``TemplateModel`` to the class prefix (``NAME`` in CamelCase, or ``--class-prefix``):

* ``src/refseg/models/NAME/``: configuration (paper defaults, ``tiny`` and ``demo`` presets), model (the output
  contract, the forward prologue, a loss), image processor (with post-processing), processor, recipe;
* ``tests/models/NAME/``: the model's tester for the shared model tester, and its own tests;
* ``docs/models/NAME.md`` and ``model_cards/NAME.md`` (stubs);

then registers the model in ``src/refseg/models/__init__.py``, adds the page to the nav of ``mkdocs.yml`` and a
line to ``CHANGELOG.md``, formats the new code with ruff and regenerates the API reference
(``scripts/gen_api_docs.py``). The result is a working skeleton that passes the shared model tester
(``python -m pytest tests/models/test_all_models.py -k NAME``); ``TODO(paper)`` marks where the paper's parts
go. ``CONTRIBUTING.md`` ("Adding a model") has the checklist that follows. Like transformers'
``add-new-model-like``, the scaffold writes files and never touches an existing model.
"""

from __future__ import annotations

import argparse
import ast
import keyword
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).resolve().parent / "new_model_template"
#: the template's names, replaced in file names and contents
TEMPLATE_NAME = "template_model"
TEMPLATE_PREFIX = "TemplateModel"
#: the template's sub-folders copied into the repository (same relative paths)
TEMPLATE_PARTS = ("src", "tests", "docs", "model_cards")
TODO_MARKER = "TODO(paper)"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
LINE_LENGTH = 110

__all__ = ["ScaffoldError", "Scaffold", "class_prefix", "main", "plan", "scaffold"]


class ScaffoldError(ValueError):
    """A NAME or a repository the scaffold refuses; the message says why and what to do."""


def class_prefix(name: str) -> str:
    """The class prefix of a model type: ``"presence_plurality"`` -> ``"PresencePlurality"``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@dataclass
class Scaffold:
    """What :func:`plan` will write: new files and the new text of edited files (path -> text)."""

    name: str
    prefix: str
    root: Path
    new_files: dict[Path, str] = field(default_factory=dict)
    edited_files: dict[Path, str] = field(default_factory=dict)

    @property
    def python_files(self) -> list[Path]:
        """The new and edited Python files (what ruff formats)."""
        return sorted(p for p in [*self.new_files, *self.edited_files] if p.suffix == ".py")


def _existing_model_types(root: Path) -> set[str]:
    models = root / "src" / "refseg" / "models"
    return {p.name for p in models.iterdir() if (p / "__init__.py").is_file()} if models.is_dir() else set()


def check_name(name: str, prefix: str, root: Path) -> None:
    """Refuse a ``name`` that is no lowercase identifier or that exists, and a ``prefix`` that is no class
    name or whose classes exist; :class:`ScaffoldError` says which and why."""
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"NAME {name!r} is not a valid model type: use a lowercase Python identifier in snake_case "
            "(letters, digits and single underscores, starting with a letter), e.g. 'presence_plurality'"
        )
    if name == TEMPLATE_NAME:
        raise ScaffoldError(f"NAME {name!r} is the template's own name; choose the model's name")
    if not prefix.isidentifier() or not prefix[:1].isupper() or keyword.iskeyword(prefix):
        raise ScaffoldError(f"class prefix {prefix!r} is not a CamelCase Python class name, e.g. 'InstAlign'")
    if name in _existing_model_types(root):
        raise ScaffoldError(
            f"a model named {name!r} already exists (src/refseg/models/{name}/); choose another NAME"
        )
    init = root / "src" / "refseg" / "models" / "__init__.py"
    if init.is_file() and re.search(
        rf"\b{re.escape(prefix)}(Config|ForReferringSegmentation)\b", init.read_text()
    ):
        raise ScaffoldError(
            f"the class prefix {prefix!r} is taken: src/refseg/models/__init__.py already registers "
            f"{prefix}Config; choose another NAME or --class-prefix"
        )


def _rename(text: str, renames: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each ``(old, new)`` applied where ``old`` is a whole name: not inside a longer word
    (``rela`` is renamed in ``convert_rela.py`` and ``RelaConfig``, never in ``relative`` or ``Relation``)."""
    for old, new in renames:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![a-z0-9])", new, text)
    return text


def _copy_tree(source: Path, base: Path, root: Path, renames: tuple[tuple[str, str], ...]) -> dict[Path, str]:
    """The files under ``source`` (a file or a folder), at their path relative to ``base`` under ``root``,
    with ``renames`` applied to the paths and the contents."""
    files = {}
    for path in sorted(source.rglob("*")) if source.is_dir() else [source]:
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".so"):
            continue
        relative = _rename(str(path.relative_to(base)), tuple((o, n) for o, n in renames if o.islower()))
        files[root / relative] = _rename(path.read_text(), renames)
    return files


def _like_prefix(like: str, root: Path) -> str:
    """The class prefix of the existing model ``like``, read from its configuration file."""
    config = root / "src" / "refseg" / "models" / like / f"configuration_{like}.py"
    found = re.search(r"^class (\w+)Config\b", config.read_text(), re.M) if config.is_file() else None
    if found is None:
        raise ScaffoldError(f"--like {like}: {config.relative_to(root)} defines no <Prefix>Config class")
    return found.group(1)


def _source_files(name: str, prefix: str, root: Path, like: str | None) -> dict[Path, str]:
    """The new files: the template's, or with ``like`` the package and tester of that model (renamed) and the
    template's docs page and model card."""
    template = ((TEMPLATE_PREFIX, prefix), (TEMPLATE_NAME, name))
    if like is None:
        files = {}
        for part in TEMPLATE_PARTS:
            files.update(_copy_tree(TEMPLATE / part, TEMPLATE, root, template))
    else:
        existing = _existing_model_types(root)
        if like not in existing:
            raise ScaffoldError(
                f"--like {like!r} is not a model of this repository; choose one of {sorted(existing)}"
            )
        renames = ((_like_prefix(like, root), prefix), (like, name))
        tester = root / "tests" / "models" / like / f"tester_{like}.py"
        files = _copy_tree(root / "src" / "refseg" / "models" / like, root, root, renames)
        files.update(_copy_tree(tester, root, root, renames))
        for part in ("docs", "model_cards"):
            files.update(_copy_tree(TEMPLATE / part, TEMPLATE, root, template))
    for path in files:
        if path.exists():
            raise ScaffoldError(
                f"{path.relative_to(root)} already exists; the scaffold never overwrites a file"
            )
    return files


def _architecture_line(names: list[str]) -> list[str]:
    """The ``Architecture(...)`` entry of ``_ARCHITECTURES``, laid out as ``ruff format`` does."""
    one_line = f"    Architecture({', '.join(names)}),"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    inner = f"        {', '.join(names)}"
    if len(inner) <= LINE_LENGTH:
        return ["    Architecture(", inner, "    ),"]
    return ["    Architecture(", *(f"        {n}," for n in names), "    ),"]


def registry_source(source: str, name: str, prefix: str, like: str | None = None) -> str:
    """``src/refseg/models/__init__.py`` with the model imported, in ``_ARCHITECTURES`` and in ``__all__``: the
    five classes of the template, or with ``like`` the names that model imports here, renamed."""
    tree = ast.parse(source)
    lines = source.splitlines()
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module]
    architectures = all_names = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        if "_ARCHITECTURES" in names and isinstance(node.value, ast.Tuple):
            architectures = node
        if "__all__" in names and isinstance(node.value, ast.List):
            all_names = node
    if not imports or architectures is None or all_names is None:
        raise ScaffoldError(
            "src/refseg/models/__init__.py has no relative model imports, no `_ARCHITECTURES = (...)` tuple or "
            "no `__all__ = [...]` list: register the model by hand (CONTRIBUTING.md, 'Adding a model')"
        )
    public = [f"{prefix}{suffix}" for suffix in ("Config", "ForReferringSegmentation", "ImageProcessor")]
    public += [f"{prefix}Output", f"{prefix}Processor"]
    architecture = [public[0], public[1], public[2], public[4]]
    if like is not None:
        (node,) = [n for n in imports if n.module == like] or [None]
        if node is None:
            raise ScaffoldError(f"src/refseg/models/__init__.py does not import the model {like!r}")
        like_prefix = node.names[0].name.removesuffix("Config")
        public = [alias.name.replace(like_prefix, prefix, 1) for alias in node.names]
    # bottom to top, so that the line numbers of the nodes above stay valid
    starred = [ast.get_source_segment(source, e) for e in all_names.value.elts if isinstance(e, ast.Starred)]
    strings = [e.value for e in all_names.value.elts if isinstance(e, ast.Constant)]
    body = [f"    {s}," for s in starred] + [f'    "{s}",' for s in sorted({*strings, *public})]
    lines[all_names.lineno - 1 : all_names.end_lineno] = ["__all__ = [", *body, "]"]
    if lines[architectures.end_lineno - 1].strip() != ")":
        raise ScaffoldError(
            "the `_ARCHITECTURES` tuple of src/refseg/models/__init__.py must end with `)` alone"
        )
    lines[architectures.end_lineno - 1 : architectures.end_lineno - 1] = _architecture_line(architecture)
    after = [n for n in imports if n.module > name]
    block = [f"from .{name} import (", *(f"    {n}," for n in sorted(public)), ")"]
    at = after[0].lineno - 1 if after else imports[-1].end_lineno
    lines[at:at] = block
    return "\n".join(lines) + "\n"


def mkdocs_source(source: str, name: str, title: str) -> str:
    """``mkdocs.yml`` with ``models/<name>.md`` as the last page of the nav's ``Models`` section."""
    lines = source.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "- Models:")
    except StopIteration:
        raise ScaffoldError(
            "mkdocs.yml has no '- Models:' section in its nav; add the page by hand"
        ) from None
    indent = len(lines[start]) - len(lines[start].lstrip()) + 4
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * indent + "- "):
        end += 1
    lines.insert(end, f"{' ' * indent}- {title}: models/{name}.md")
    return "\n".join(lines) + "\n"


def changelog_source(source: str, name: str, prefix: str) -> str:
    """``CHANGELOG.md`` with the model under "Added" of the "Unreleased" section."""
    entry = (
        f'- {prefix} (`model_type="{name}"`, `refseg.models.{name}`): {TODO_MARKER} authors, title, venue '
        "year; what the model adds."
    )
    lines = source.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## [Unreleased]"))
    except StopIteration:
        raise ScaffoldError("CHANGELOG.md has no '## [Unreleased]' section; add the line by hand") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    added = next((i for i in range(start + 1, end) if lines[i].strip() == "### Added"), None)
    if added is not None:
        lines.insert(added + 1, entry)
    else:
        lines[start + 1 : start + 1] = ["", "### Added", entry]
    return "\n".join(lines) + "\n"


def plan(
    name: str,
    root: Path = ROOT,
    prefix: str | None = None,
    title: str | None = None,
    like: str | None = None,
) -> Scaffold:
    """Everything the scaffold of ``name`` (from the template, or ``like`` an existing model) writes under
    ``root``, checked, without writing anything."""
    root = Path(root)
    prefix = prefix or class_prefix(name)
    check_name(name, prefix, root)
    result = Scaffold(name, prefix, root, new_files=_source_files(name, prefix, root, like))
    edits = {
        root / "src" / "refseg" / "models" / "__init__.py": lambda s: registry_source(s, name, prefix, like),
        root / "mkdocs.yml": lambda s: mkdocs_source(s, name, title or prefix),
        root / "CHANGELOG.md": lambda s: changelog_source(s, name, prefix),
    }
    for path, edit in edits.items():
        if not path.is_file():
            raise ScaffoldError(f"{path} does not exist: is {root} a refseg repository?")
        result.edited_files[path] = edit(path.read_text())
    return result


def _ruff(arguments: list[str], files: list[Path], root: Path) -> None:
    try:
        subprocess.run(
            [sys.executable, "-m", "ruff", *arguments, *map(str, files)],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as error:
        raise ScaffoldError(
            f"ruff {' '.join(arguments)} failed on the scaffold:\n{error.stdout}{error.stderr}"
        ) from None


def scaffold(
    name: str,
    root: Path = ROOT,
    prefix: str | None = None,
    title: str | None = None,
    api_docs: bool = True,
    like: str | None = None,
) -> Scaffold:
    """Write the model ``name`` into the repository at ``root``; returns what was written.

    The new Python files are formatted with ``ruff`` (a test dependency) so that ``ruff format --check`` passes
    whatever the length of ``name``; ``api_docs`` regenerates ``docs/api/`` with ``scripts/gen_api_docs.py``.
    """
    result = plan(name, root, prefix, title, like)
    for path, text in {**result.new_files, **result.edited_files}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if shutil.which("ruff") or _has_module("ruff"):
        _ruff(["check", "--fix", "--select", "I", "--quiet"], result.python_files, result.root)
        _ruff(["format", "--quiet"], result.python_files, result.root)
    else:
        print("ruff is not installed: run `ruff format` on the new files", file=sys.stderr)
    if api_docs:
        subprocess.run(
            [sys.executable, str(result.root / "scripts" / "gen_api_docs.py")],
            cwd=result.root,
            check=True,
            env=_env_with_src(result.root),
        )
    return result


def _has_module(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _env_with_src(root: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = f"{root / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def _report(result: Scaffold) -> str:
    def rel(path: Path) -> str:
        return str(path.relative_to(result.root))

    todos = [
        f"{rel(path)}:{number}"
        for path in sorted(result.new_files)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TODO_MARKER in line
    ]
    name = result.name
    return "\n".join(
        [
            f"created {len(result.new_files)} files for model_type {name!r} (classes {result.prefix}*):",
            *(f"  {rel(p)}" for p in sorted(result.new_files)),
            "edited: " + ", ".join(rel(p) for p in sorted(result.edited_files)),
            f"{len(todos)} {TODO_MARKER} markers: grep -rn '{TODO_MARKER}' src/refseg/models/{name} "
            f"tests/models/{name} docs/models/{name}.md model_cards/{name}.md",
            "next: python -m pytest tests/models/test_all_models.py tests/models/"
            f"{name} -k {name}   (then CONTRIBUTING.md, 'Adding a model')",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: scaffold ``NAME`` and print what was written; exit 2 with one line on a refusal."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "name", metavar="NAME", help="the new model_type, snake_case (e.g. presence_plurality)"
    )
    parser.add_argument("--class-prefix", help="class name prefix (default: NAME in CamelCase)")
    parser.add_argument(
        "--like",
        metavar="MODEL_TYPE",
        help="start from a copy of this existing model (its package and tester, renamed) instead of the template",
    )
    parser.add_argument("--title", help="the model's name in the docs nav (default: the class prefix)")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the repository to write into (default: this one)"
    )
    parser.add_argument(
        "--skip-api-docs", action="store_true", help="do not regenerate docs/api/ (scripts/gen_api_docs.py)"
    )
    args = parser.parse_args(argv)
    try:
        result = scaffold(
            args.name,
            args.root,
            args.class_prefix,
            args.title,
            api_docs=not args.skip_api_docs,
            like=args.like,
        )
    except ScaffoldError as error:
        print(f"new_model.py: error: {error}", file=sys.stderr)
        return 2
    print(_report(result))
    if not args.skip_api_docs:
        print("regenerated docs/api/ (scripts/gen_api_docs.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
