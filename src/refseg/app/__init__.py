"""``refseg app``: a Gradio web app around the referring-segmentation pipeline (``pip install refseg[app]``).

:mod:`refseg.app.inference` holds the prediction logic (no Gradio needed), :mod:`refseg.app.models`
the fixed list of models, :mod:`refseg.app.limits` the input limits, :mod:`refseg.app.upload` the
reading of uploads, and :mod:`refseg.app.blocks` the Gradio layout. See ``docs/app.md``.
"""

from .inference import DEMO_MODEL, AppResult, SegmenterCache, segment, synthetic_example
from .limits import AppLimits

__all__ = [
    "DEMO_MODEL",
    "AppLimits",
    "AppResult",
    "SegmenterCache",
    "build_app",
    "segment",
    "synthetic_example",
]


def build_app(*args, **kwargs):
    """The Gradio Blocks app (see :func:`refseg.app.blocks.build_app`); needs ``gradio``."""
    from .blocks import build_app as _build_app

    return _build_app(*args, **kwargs)
