"""Start a model's BEiT-3 encoder from a BEiT-3 pretraining checkpoint before training (InstanceVG)."""

from __future__ import annotations

import os

from torch import nn

from ..modeling.beit3 import Beit3Encoder
from ..modeling.beit3_pretrained import Beit3LoadingReport, load_beit3_pretrained

__all__ = ["init_beit3_encoder"]


def init_beit3_encoder(model: nn.Module, path: str | os.PathLike) -> Beit3LoadingReport:
    """Load the BEiT-3 pretraining checkpoint ``path`` into the model's (single) BEiT-3 encoder, in place.

    The file is read safely (safetensors, or ``torch.load(weights_only=True)``) and the image position table
    is interpolated when the checkpoint was pretrained at another resolution (224x224 -> 320x320 for
    InstanceVG), see :func:`refseg.modeling.beit3_pretrained.load_beit3_pretrained`.

    Raises:
        ValueError: the model has no BEiT-3 encoder (only InstanceVG has one), or the file is not a BEiT-3
            checkpoint that fits the encoder's config.
        FileNotFoundError: ``path`` does not exist.
    """
    encoders = [module for module in model.modules() if isinstance(module, Beit3Encoder)]
    if len(encoders) != 1:
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(
            f"a BEiT-3 initialisation needs a model with one BEiT-3 encoder (model type instancevg); "
            f"model type {model_type!r} has {len(encoders)}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BEiT-3 checkpoint not found: {os.fspath(path)}")
    try:
        return load_beit3_pretrained(encoders[0], path)
    except ValueError as error:
        if "text_embedding" in str(error):
            raise ValueError(
                f"{error}\n(the text embedding has a row per token of the tokenizer: train with BEiT-3's XLM-R "
                "sentencepiece tokenizer (--tokenizer_name_or_path), and give the encoder the checkpoint's row count, "
                "64010 for the released BEiT-3 files, with --config_overrides "
                '\'{"text_config": {"vocab_size": 64010}}\')'
            ) from error
        raise
    except Exception as error:  # not a checkpoint at all: truncated, foreign format, garbage
        raise ValueError(
            f"cannot read {os.fspath(path)} as a BEiT-3 checkpoint (a torch.save state dict or safetensors "
            f"file): {type(error).__name__}: {error}"
        ) from error
