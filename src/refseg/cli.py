"""The ``refseg`` command: ``refseg demo``, ``refseg predict``, ``refseg kernels``, ``refseg data``."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module that provides ``add_arguments(parser)`` and ``run(args) -> int``
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "refseg.commands.demo",
        "run the pipeline on fresh synthetic scenes and write an overlay picture",
    ),
    "predict": ("refseg.commands.predict", "segment what a sentence refers to in your own image"),
    "kernels": ("refseg.kernels.command", "build or inspect the compiled multi-scale deformable attention"),
    "data": ("refseg.data.command", "prepare benchmark datasets in the refseg schema"),
    "convert": ("refseg.commands.convert", "convert a released checkpoint of an original implementation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
