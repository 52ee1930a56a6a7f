"""The layer rules of refseg, read from the imports of every module (top-level and inside functions).

Each part of the package (a top-level module or subpackage of ``refseg``, and the ``refseg_cli`` command)
may import only the parts listed for it in ``ALLOWED``: the shared pure helpers at the bottom, the shared
blocks (``modeling``) below the models, the models below the pipeline, training and export, and the user
interfaces (the web app and the command) on top. Metrics are pure functions: they never import a model or
a model block. No part imports another part's private module or private name (a leading underscore).
Importing the root package ``refseg`` itself (for ``__version__``, ``demo_model_path()`` or the Auto-class
registration) is allowed everywhere: it is the public entry point.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import refseg

SRC = Path(refseg.__file__).resolve().parents[1]

_FOUNDATION = {
    "refseg.validation",
    "refseg.error_messages",
    "refseg.boxes",
    "refseg.url_fetch",
    "refseg.image_utils",
    "refseg.out_of_vocabulary",
}
# part -> the other parts (or single modules of a part) it may import, bottom to top
ALLOWED: dict[str, set[str]] = {
    "refseg.validation": set(),
    "refseg.error_messages": set(),
    "refseg.boxes": set(),
    "refseg.url_fetch": set(),
    "refseg.image_utils": {"refseg.url_fetch", "refseg.validation", "refseg.error_messages"},
    "refseg.out_of_vocabulary": {"refseg.validation"},
    "refseg.kernels": {"refseg.validation"},
    "refseg.hub": set(),
    "refseg.visualization": _FOUNDATION,
    "refseg.data": _FOUNDATION,
    "refseg.metrics": _FOUNDATION | {"refseg.data"},
    "refseg.modeling": _FOUNDATION | {"refseg.kernels"},
    # the base image processor carries the one post_process_referring_segmentation of modeling.post_processing
    "refseg.image_processing_utils": _FOUNDATION
    | {"refseg.data", "refseg.modeling.post_processing", "refseg.modeling.outputs"},
    "refseg.processing_utils": _FOUNDATION,
    # a model's recipe.py describes its paper's training with refseg.training.recipes' data classes; the
    # rest of refseg.training (the distributed loss counts) sits above the models
    "refseg.models": _FOUNDATION
    | {
        "refseg.kernels",
        "refseg.modeling",
        "refseg.image_processing_utils",
        "refseg.processing_utils",
        "refseg.training.recipes",
    },
    "refseg.pipelines": _FOUNDATION | {"refseg.modeling", "refseg.models"},
    "refseg.training": _FOUNDATION | {"refseg.modeling", "refseg.models"},
    "refseg.export": _FOUNDATION | {"refseg.kernels", "refseg.modeling", "refseg.models"},
    "refseg.demo_notice": _FOUNDATION | {"refseg.data"},
    "refseg.app": _FOUNDATION
    | {"refseg.data", "refseg.demo_notice", "refseg.pipelines", "refseg.visualization"},
}
# the root package is the public face (it registers the models and the pipeline task and exposes the
# subpackages lazily); the command sits on top of everything
ALLOWED["refseg"] = set(ALLOWED)
ALLOWED["refseg_cli"] = set(ALLOWED)


def _allowed(own: str, name: str) -> bool:
    """Whether part ``own`` may import ``name``: its part, or a module listed by its dotted path, is allowed."""
    return any(name == entry or name.startswith(entry + ".") for entry in ALLOWED.get(own, set()))


# known violations that another change of issue 23 removes; each entry must still exist (see below)
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` (dotted, inside ``src/``) is a module or package, not a name defined in one."""
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """The refseg modules and names ``module`` imports, as absolute dotted names (relative imports resolved).

    ``from a.b import c`` gives ``a.b.c`` whether ``c`` is a module or a name defined in ``a.b``: the part is
    the same, and a private name stays visible by its last piece.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pieces = package.split(".")
                base = ".".join(
                    pieces[: len(pieces) - node.level + 1] + ([node.module] if node.module else [])
                )
            else:
                base = node.module or ""
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("refseg", "refseg_cli")}


def part_of(name: str) -> str:
    """The part a dotted name belongs to: ``refseg.<first piece>``, ``refseg`` or ``refseg_cli``."""
    pieces = name.split(".")
    if pieces[0] == "refseg_cli":
        return "refseg_cli"
    # ``refseg.<name>`` is a part when it is a module; a longer path always names a module of a part
    if len(pieces) > 2 or (len(pieces) == 2 and _is_module(name)):
        return ".".join(pieces[:2])
    return "refseg"


def _violations(module: str, imported: set[str]) -> list[str]:
    """What breaks a layer rule among the names ``module`` imports."""
    own = part_of(module)
    problems = []
    for name in sorted(imported):
        target = part_of(name)
        if target in (own, "refseg"):
            continue
        if not _allowed(own, name):
            problems.append(f"{module} imports {name}: {own} may not import {target}")
        inner = name.split(".")[1 if target == "refseg_cli" else 2 :]
        if any(piece.startswith("_") and not piece.startswith("__") for piece in inner):
            problems.append(f"{module} imports {name}: a private module or name of {target}")
    return problems


def _all_modules() -> list[tuple[str, Path]]:
    files = sorted((SRC / "refseg").rglob("*.py")) + sorted((SRC / "refseg_cli").rglob("*.py"))
    return [(_module_name(path), path) for path in files]


def test_every_part_has_a_rule():
    parts = {part_of(module) for module, _ in _all_modules()} - {"refseg"}
    assert parts - set(ALLOWED) == set(), "add the new part to ALLOWED with the parts it may import"
    assert {"refseg.models", "refseg.modeling", "refseg.metrics", "refseg_cli"} <= parts


def test_no_module_breaks_a_layer_rule():
    problems = []
    for module, path in _all_modules():
        imported = imports_of(path.read_text(), module, path.name == "__init__.py")
        allowed = {name for name in imported if (module, part_of(name)) in KNOWN_VIOLATIONS}
        problems += _violations(module, imported - allowed)
    assert problems == []


def test_known_violations_still_exist():
    """An entry of KNOWN_VIOLATIONS that was fixed must be deleted, so the rule applies again."""
    for module, target in KNOWN_VIOLATIONS:
        path = SRC.joinpath(*module.split(".")).with_suffix(".py")
        imported = imports_of(path.read_text(), module, False)
        assert any(part_of(name) == target for name in imported), (module, target)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # the four rules issue 23 found broken, each caught
        ("refseg.app.models", "from ..commands._common import load_pipeline\n", 2),
        ("refseg.metrics.rec", "from ..modeling.matching import hungarian_match\n", 1),
        ("refseg.pipelines.loading", "def f():\n    from ..models import _ARCHITECTURES\n", 1),
        ("refseg.modeling.text_encoder", "from refseg.data import synthetic_tokenizer\n", 1),
        # upward arrows, absolute or relative, at the top or inside a function
        ("refseg.modeling.losses", "import refseg.models.instalign\n", 1),
        ("refseg.models.metris.criterion", "from ...pipelines import loading\n", 1),
        ("refseg.data.builder", "def f():\n    from refseg_cli import main\n", 1),
        ("refseg.kernels", "from ..modeling import deformable_attention\n", 1),
        # allowed: downward arrows, the root package, the own part, public names
        ("refseg.models.instalign.criterion", "from ...modeling.losses import dice_loss\n", 0),
        ("refseg.metrics.grec", "from ..boxes import generalized_box_iou\n", 0),
        ("refseg.url_fetch", "from . import __version__\n", 0),
        (
            "refseg.app.inference",
            "from .limits import AppLimits\nfrom ..demo_notice import demo_model_notice\n",
            0,
        ),
        ("refseg.pipelines.loading", "from ..models import model_types\n", 0),
        ("refseg.models.metris.recipe", "from ...training.recipes import TrainingRecipe\n", 0),
        ("refseg.models.metris.criterion", "from ...training.distributed import loss_counts\n", 1),
        (
            "refseg_cli.predict",
            "from refseg.pipelines.loading import load_referring_segmentation_pipeline\n",
            0,
        ),
    ],
)
def test_the_checker_catches_what_breaks_a_rule(module, source, expected):
    is_package = (SRC.joinpath(*module.split(".")) / "__init__.py").is_file()
    problems = _violations(module, imports_of(source, module, is_package))
    assert len(problems) == expected, problems
