"""Tell the user plainly when the synthetic demo model is asked about a real photo.

The bundled demo model was trained only on synthetic scenes (coloured shapes on a grey, lightly
textured background, described with the synthetic grammar's words). On a photo it still answers,
with confident but meaningless masks; ``refseg predict`` and ``refseg app`` print
:func:`demo_model_notice` instead of letting that pass silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

__all__ = ["REAL_MODELS_HINT", "demo_model_notice", "is_synthetic_model", "looks_synthetic"]

REAL_MODELS_HINT = (
    "For real photos use a model trained on real referring expressions, e.g. a converted InstanceVG "
    "checkpoint: `refseg convert instancevg CHECKPOINT --output DIR`, then `--model DIR` "
    "(see docs/models/instancevg.md)."
)

# fraction of neighbouring-pixel steps above EDGE_STEP (at 160 px): synthetic scenes are piecewise smooth
# (0.01-0.05 measured on synthetic scenes), photos are textured (0.4-0.5 measured on photos)
EDGE_STEP = 6.0
MAX_SYNTHETIC_EDGE_FRACTION = 0.15


def _same_folder(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def is_synthetic_model(model_path: str | Path | None, tokenizer: Any = None) -> bool:
    """True for the bundled demo model, or any model whose tokenizer knows only synthetic-grammar words."""
    import refseg

    if model_path is not None:
        try:
            if _same_folder(model_path, refseg.demo_model_path()):
                return True
        except FileNotFoundError:
            pass
    if tokenizer is None:
        return False
    from .data.synthetic.grammar import vocabulary

    special = set(getattr(tokenizer, "all_special_tokens", []))
    words = {t for t in tokenizer.get_vocab() if t not in special}
    return bool(words) and words <= set(vocabulary()) | set(".,")


def looks_synthetic(image: PIL.Image.Image) -> bool:
    """Whether ``image`` looks like a synthetic scene (piecewise flat) rather than a photo (textured).

    Measured at 160x160: the fraction of horizontal/vertical neighbour steps larger than
    ``EDGE_STEP`` grey levels in any channel.
    """
    array = np.asarray(image.convert("RGB").resize((160, 160), PIL.Image.BILINEAR), dtype=np.float32)
    steps = np.concatenate(
        [
            np.abs(np.diff(array, axis=1)).max(-1).ravel(),
            np.abs(np.diff(array, axis=0)).max(-1).ravel(),
        ]
    )
    return float((steps > EDGE_STEP).mean()) <= MAX_SYNTHETIC_EDGE_FRACTION


def demo_model_notice(model_path: str | Path | None, tokenizer: Any, image: PIL.Image.Image) -> str | None:
    """A plain message when a synthetic-scene model meets a photo-like image; None otherwise."""
    if not is_synthetic_model(model_path, tokenizer) or looks_synthetic(image):
        return None
    return (
        "Note: this is the synthetic demo model. It only knows synthetic scenes (coloured circles, "
        "squares, triangles, stars and rings on a grey background) and the few words that describe "
        "them, so its answer on this photo is meaningless. " + REAL_MODELS_HINT
    )
