"""The ``refseg`` command, importable from the package: :func:`main` and :func:`build_parser`.

The dispatcher itself is the top-level module ``refseg_cli`` (the console script's entry point), so that
``refseg --help`` does not import torch through ``import refseg``.
"""

from __future__ import annotations

from refseg_cli import build_parser, main

__all__ = ["build_parser", "main"]
