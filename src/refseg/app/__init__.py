"""``refseg app``: a Gradio web app around the referring-segmentation pipeline (``pip install refseg[app]``).

:mod:`refseg.app.inference` holds the prediction logic (no Gradio needed), :mod:`refseg.app.blocks`
the Gradio layout. See ``docs/app.md``.
"""

from .inference import DEMO_MODEL, AppResult, SegmenterCache, segment, synthetic_example

__all__ = ["DEMO_MODEL", "AppResult", "SegmenterCache", "build_app", "segment", "synthetic_example"]


def build_app(*args, **kwargs):
    """The Gradio Blocks app (see :func:`refseg.app.blocks.build_app`); needs ``gradio``."""
    from .blocks import build_app as _build_app

    return _build_app(*args, **kwargs)
