"""refseg: referring expression segmentation models, data and metrics in the style of Transformers.

Importing ``refseg`` registers every model with the Auto classes and the
``"referring-segmentation"`` pipeline task.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0.dev0"

from . import models as models  # noqa: E402  (registers the Auto classes)
from . import pipelines as pipelines  # noqa: E402  (registers the pipeline task)


def demo_model_path() -> str:
    """Folder of the small InstAlign bundled with the package, loadable with ``from_pretrained``."""
    path = Path(__file__).parent / "demo_model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing from {path}; reinstall refseg")
    return str(path)


__all__ = ["__version__", "demo_model_path"]
