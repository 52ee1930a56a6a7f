#!/usr/bin/env python
"""Write the API reference pages under ``docs/api/`` from the package tree.

One page per part of refseg (models, shared blocks, pipeline, data, metrics, kernels, commands); each page
has one mkdocstrings block per public module, so every public class and function is rendered from its
docstring. Run it after adding a module: ``python scripts/gen_api_docs.py``; ``--check`` exits non-zero when
the pages on disk are out of date (the tests run it).
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "refseg"

# page file -> (title, introduction, package prefixes whose modules the page documents)
PAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "models.md": (
        "Models",
        "Configurations, task models, image processors and processors of every architecture.",
        ("refseg.models",),
    ),
    "modeling.md": (
        "Shared blocks",
        "Blocks shared by several architectures (`refseg.modeling`), one concept per module.",
        ("refseg.modeling",),
    ),
    "pipelines.md": (
        "Pipeline and visualisation",
        'The `"referring-segmentation"` pipeline, Hub helpers and drawing utilities.',
        ("refseg.pipelines", "refseg.hub", "refseg.visualization"),
    ),
    "data.md": ("Data", "Dataset builders, synthetic scenes, augmentation and samplers.", ("refseg.data",)),
    "metrics.md": (
        "Metrics",
        "The official metric definitions and their `evaluate` modules.",
        ("refseg.metrics",),
    ),
    "kernels.md": ("Kernels", "The compiled multi-scale deformable attention op.", ("refseg.kernels",)),
    "commands.md": (
        "Command line",
        "The `refseg` command and its subcommands.",
        ("refseg_cli", "refseg.cli", "refseg.commands"),
    ),
    "app_export.md": (
        "Web app and export",
        "The Gradio app and the ONNX export.",
        ("refseg.app", "refseg.export"),
    ),
    "training.md": ("Training", "Crash-safe checkpoints and training helpers.", ("refseg.training",)),
}
# every public module not claimed by a page above lands here, so none is left out of the reference
OTHER_PAGE = (
    "utilities.md",
    "Utilities",
    "Input checks, image loading and other helpers shared by the library.",
)
TOP_LEVEL = (
    "# Top level\n\nThe names a user imports from `refseg` directly, as in transformers "
    "(`from refseg import InstAlignConfig, ...`); each is documented on the page of the module that "
    "defines it.\n\n::: refseg\n    options:\n      show_submodules: false\n"
)


def public_modules() -> list[str]:
    """Importable module names of refseg whose own name and parents' names are not private."""
    names = ["refseg", "refseg_cli"]
    for info in pkgutil.walk_packages([str(PACKAGE)], "refseg."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def render() -> dict[str, str]:
    """The text of every page, keyed by file name under ``docs/api/``."""
    modules = public_modules()
    pages = {"refseg.md": TOP_LEVEL}
    claimed = {"refseg"}
    sections = [(file, title, intro, prefixes) for file, (title, intro, prefixes) in PAGES.items()]
    for file, title, intro, prefixes in sections:
        members = [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
        claimed.update(members)
        pages[file] = _page(title, intro, members)
    file, title, intro = OTHER_PAGE
    pages[file] = _page(title, intro, [m for m in modules if m not in claimed])
    return pages


def _page(title: str, intro: str, modules: list[str]) -> str:
    """One API page: a heading, a sentence and one mkdocstrings block per module."""
    blocks = [f"::: {m}\n    options:\n      show_submodules: false\n" for m in modules]
    return f"# {title}\n\n{intro}\n\n" + "\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api/ is out of date")
    args = parser.parse_args(argv)
    out = ROOT / "docs" / "api"
    stale = []
    for name, text in render().items():
        path = out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python scripts/gen_api_docs.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
