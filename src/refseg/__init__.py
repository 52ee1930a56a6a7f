"""refseg: referring expression segmentation models, data and metrics in the style of Transformers.

Importing ``refseg`` registers every model with the Auto classes and the
``"referring-segmentation"`` pipeline task, and exposes every model's public classes at the top level
(``from refseg import InstAlignConfig, InstAlignForReferringSegmentation, InstAlignProcessor``): the
names listed in ``refseg.models.__all__``. The other subpackages (``refseg.data``, ``refseg.metrics``,
``refseg.training``, ...) are imported on first access, so ``import refseg`` loads neither ``datasets``
nor ``pycocotools`` nor any dataset builder.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0.dev0"

from . import models as models  # noqa: E402  (registers the Auto classes)
from . import pipelines as pipelines  # noqa: E402  (registers the pipeline task)
from .modeling.outputs import ReferringSegmentationOutput  # noqa: E402  (the output contract)
from .models import *  # noqa: E402, F403  (every model's Config / ForReferringSegmentation / processors)

# subpackages and modules imported on first attribute access (``refseg.data.synthetic_scenes(...)``)
_LAZY_SUBMODULES = (
    "data",
    "hub",
    "kernels",
    "metrics",
    "modeling",
    "training",
    "visualization",
)


def __getattr__(name: str) -> Any:
    """Import a refseg subpackage on first access, e.g. ``refseg.data`` or ``refseg.metrics``."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_SUBMODULES})


def demo_model_path() -> str:
    """Folder of the small InstAlign bundled with the package, loadable with ``from_pretrained``."""
    path = Path(__file__).parent / "demo_model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing from {path}; reinstall refseg")
    return str(path)


def example_image() -> str:
    """Path of a small example picture bundled with the package, for trying the pipeline without a file.

    A 160x160 synthetic scene (``refseg.data``'s generator, the demo model's input size) holding a large
    orange square, a small red ring, a large green square and a large red circle, so that sentences such as
    ``"the red circle and the green square"`` or ``"the red ring"`` refer to something in it::

        segmenter = pipeline("referring-segmentation", model=refseg.demo_model_path())
        segmenter(refseg.example_image(), "the red circle and the green square")
    """
    path = Path(__file__).parent / "demo_model" / "example_scene.png"
    if not path.is_file():
        raise FileNotFoundError(f"the bundled example image is missing: {path}; reinstall refseg")
    return str(path)


_MODEL_NAMES = [name for name in models.__all__ if name not in models.REGISTRY_NAMES]

__all__ = [
    "__version__",
    "ReferringSegmentationOutput",
    "demo_model_path",
    "example_image",
    *_MODEL_NAMES,
]
