"""No model package imports another model package: shared parts live in ``refseg.modeling`` and the base
processors (``refseg.image_processing_utils``, ``refseg.processing_utils``)."""

from __future__ import annotations

import ast
from pathlib import Path

import refseg.models

MODELS_DIR = Path(refseg.models.__file__).parent


def _model_packages() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _imported_models(source: str, subdirs: tuple[str, ...], package: str, models: set[str]) -> set[str]:
    """Model packages other than ``package`` that a module of ``refseg/models/<package>/<subdirs>/`` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            else:  # resolve ``..other`` / ``...models.other`` against refseg/models/<package>/<file>
                parts = ["refseg", "models", package, *subdirs]
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[:2] == ["refseg", "models"] and len(pieces) > 2 and pieces[2] in models:
                found.add(pieces[2])
    return found - {package}


def test_there_are_model_packages_to_check():
    assert {"instalign", "metris", "presence_plurality"} <= set(_model_packages())


def test_no_model_package_imports_another():
    models = set(_model_packages())
    offenders = {
        str(path.relative_to(MODELS_DIR)): sorted(others)
        for package in models
        for path in (MODELS_DIR / package).rglob("*.py")
        if (
            others := _imported_models(
                path.read_text(), path.relative_to(MODELS_DIR / package).parts[:-1], package, models
            )
        )
    }
    assert offenders == {}


def test_the_checker_catches_relative_and_absolute_imports():
    models = {"alpha", "beta"}
    for source, subdirs, expected in (
        ("from ..beta.processing_beta import P\n", (), {"beta"}),
        ("from ...beta import P\n", ("sub",), {"beta"}),
        ("from ...models.beta import P\n", (), {"beta"}),
        ("from .. import beta\n", (), {"beta"}),
        ("import refseg.models.beta.modeling_beta\n", (), {"beta"}),
        ("from refseg.models.beta import P\n", (), {"beta"}),
        ("from .processing_alpha import P\nfrom ...boxes import masks_to_boxes\n", (), set()),
        ("from ..alpha import P\n", (), set()),
    ):
        assert _imported_models(source, subdirs, "alpha", models) == expected, source
