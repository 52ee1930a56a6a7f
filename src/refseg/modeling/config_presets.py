"""Shared plumbing of the models' ``Config.preset(name, **overrides)``: Swin sizes and override merging.

Every model offers the presets ``"tiny"`` (unit tests: 64x64 inputs), ``"demo"`` (CPU training on synthetic
scenes: 160x160 inputs, where window 5 tiles every Swin stage, 40, 20, 10, 5, without padding) and
``"paper"`` (the defaults). The Swin backbones of ``"tiny"`` and ``"demo"`` are the same for every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BERT_BASE_UNCASED",
    "SWIN_BASE",
    "check_preset_name",
    "merge_preset_overrides",
    "swin_preset",
    "synthetic_vocabulary",
]

# Swin-B (window 12, ImageNet-22k 384 checkpoint sizes): the "paper" backbone of every model
SWIN_BASE: dict[str, Any] = {
    "image_size": 384,
    "patch_size": 4,
    "embed_dim": 128,
    "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32],
    "window_size": 12,
    "drop_path_rate": 0.3,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}
# BERT-base uncased sizes: the "paper" text encoder of the BERT-based models
BERT_BASE_UNCASED: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}

_SWIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model_type": "swin",
        "image_size": 64,
        "patch_size": 4,
        "embed_dim": 16,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 2, 2, 4],
        "window_size": 4,
        "drop_path_rate": 0.0,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    },
    "demo": {
        "model_type": "swin",
        "image_size": 160,
        "patch_size": 4,
        "embed_dim": 32,
        "depths": [1, 1, 2, 1],
        "num_heads": [1, 2, 4, 8],
        "window_size": 5,
        "mlp_ratio": 2.0,
        "drop_path_rate": 0.0,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    },
}


def check_preset_name(name: str, presets: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the choices when ``name`` is not one of ``presets``."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {tuple(presets)}")


def swin_preset(name: str) -> dict[str, Any]:
    """A fresh Swin ``backbone_config`` dict of the ``"tiny"`` (embed 16, depths 1-1-1-1, window 4, 64x64) or
    ``"demo"`` (embed 32, depths 1-1-2-1, window 5, MLP ratio 2, 160x160) preset, all four stages out."""
    check_preset_name(name, tuple(_SWIN_PRESETS))
    return {
        key: list(value) if isinstance(value, list) else value for key, value in _SWIN_PRESETS[name].items()
    }


def merge_preset_overrides(
    values: dict[str, Any], backbone: dict[str, Any], text: dict[str, Any], overrides: dict[str, Any]
) -> dict[str, Any]:
    """The config kwargs of a preset: ``values`` with ``backbone_config`` / ``text_config`` set, then ``overrides``.

    A dict override of ``backbone_config`` or ``text_config`` is merged into the preset's sub-config; any other
    value (e.g. a ``PretrainedConfig``) replaces it. ``overrides`` is consumed.
    """
    values = dict(values)
    for key, sub in (("backbone_config", backbone), ("text_config", text)):
        if isinstance(overrides.get(key), dict):
            sub = {**sub, **overrides.pop(key)}
        values[key] = overrides.pop(key, sub)
    values.update(overrides)
    return values


def synthetic_vocabulary() -> tuple[int, int, int, int]:
    """(vocab_size, pad, bos, eos) of refseg's synthetic-scene tokenizer (``refseg.data.synthetic_tokenizer``)."""
    from ..data import synthetic_tokenizer

    tokenizer = synthetic_tokenizer()
    return len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
