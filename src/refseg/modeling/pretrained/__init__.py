"""Start from outside weights: the one home for reading weights that were not saved by refseg.

* :mod:`~refseg.modeling.pretrained.files`: the shared readers. :func:`read_weights_file` reads a released
  checkpoint or a pretraining file safely (safetensors, or ``torch.load(weights_only=True)`` with numpy
  scalars as the only extra globals, :mod:`~refseg.modeling.pretrained.safe_globals`);
  :func:`read_state_dict` takes the state dict out of it (``state_dict`` / ``model`` / ``module`` entry,
  ``module.`` prefix removed).
* :mod:`~refseg.modeling.pretrained.encoders`: :func:`load_pretrained_encoders` copies a Hugging Face Swin
  and RoBERTa/BERT checkpoint into a freshly built model's vision and text encoders.
* :func:`init_beit3_encoder` / :func:`load_beit3_pretrained` start a BEiT-3 encoder from a BEiT-3 pretraining
  checkpoint (defined with BEiT-3's key map in :mod:`refseg.modeling.beit3.pretrained`).
* The key maps live next to what they map: BEiT-3's in :mod:`refseg.modeling.beit3.pretrained`, each released
  model's checkpoint in its converter ``refseg/models/<model_type>/convert_*.py``; all of them read files
  through the readers above.
"""

from __future__ import annotations

import importlib
from typing import Any

from .encoders import EncoderLoadingReport, load_pretrained_encoders
from .files import read_state_dict, read_weights_file

# BEiT-3's loaders, importable from here too; resolved on first access because refseg.modeling.beit3.pretrained
# itself reads files through this package
_BEIT3_NAMES = ("Beit3LoadingReport", "init_beit3_encoder", "load_beit3_pretrained")


def __getattr__(name: str) -> Any:
    """``init_beit3_encoder`` and the other BEiT-3 loaders, from :mod:`refseg.modeling.beit3.pretrained`."""
    if name in _BEIT3_NAMES:
        return getattr(importlib.import_module("..beit3.pretrained", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Beit3LoadingReport",
    "EncoderLoadingReport",
    "init_beit3_encoder",
    "load_beit3_pretrained",
    "load_pretrained_encoders",
    "read_state_dict",
    "read_weights_file",
]
