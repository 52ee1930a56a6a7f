"""Named configurations as data: one ``Config.preset(name, **overrides)`` for every model.

A config class mixes in :class:`ConfigPresets` and lists its presets in ``presets``, a table of preset name ->
field values that differ from the defaults (the defaults are the paper's configuration). Besides the paper's rows,
every model has ``"tiny"`` (unit tests: 64x64 inputs) and ``"demo"`` (CPU training on synthetic scenes: 160x160
inputs, where window 5 tiles every Swin stage, 40, 20, 10, 5, without padding). The shared sizes below are the
backbones and text encoders several tables use.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "BERT_BASE_UNCASED",
    "BERT_DEMO",
    "BERT_TINY",
    "SWIN_BASE",
    "SWIN_DEMO",
    "SWIN_TINY",
    "SYNTHETIC_VOCABULARY",
    "ConfigPresets",
    "merge_overrides",
]

# Swin-B (window 12, ImageNet-22k 384 checkpoint sizes): the "paper" backbone of every Swin model
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
# the "tiny" Swin of every model: embed 16, depths 1-1-1-1, window 4, 64x64
SWIN_TINY: dict[str, Any] = {
    "model_type": "swin",
    "image_size": 64,
    "patch_size": 4,
    "embed_dim": 16,
    "depths": [1, 1, 1, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": 4,
    "drop_path_rate": 0.0,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}
# the "demo" Swin of every model: embed 32, depths 1-1-2-1, window 5, MLP ratio 2, 160x160
SWIN_DEMO: dict[str, Any] = {
    **SWIN_TINY,
    "image_size": 160,
    "embed_dim": 32,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 4, 8],
    "window_size": 5,
    "mlp_ratio": 2.0,
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
# the 2-layer BERT of the "tiny" presets (each model sets max_position_embeddings)
BERT_TINY: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "type_vocab_size": 2,
    "pad_token_id": 0,
}
# the 2-layer BERT of the "demo" presets, width 96 (each model sets its vocabulary)
BERT_DEMO: dict[str, Any] = {
    **BERT_TINY,
    "hidden_size": 96,
    "num_attention_heads": 4,
    "intermediate_size": 192,
}
# Size and special ids of the synthetic scenes' word-level tokenizer (``refseg.data.synthetic_tokenizer()``),
# which the "demo" text encoders read; a test holds these numbers to the tokenizer.
SYNTHETIC_VOCABULARY: dict[str, int] = {
    "vocab_size": 49,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def merge_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` updated by ``overrides``; a dict overriding a dict (a sub-config) is merged into it."""
    merged = copy.deepcopy(dict(values))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = {**merged[key], **value}
        merged[key] = value
    return merged


class ConfigPresets:
    """Mixin of the configs: ``preset(name, **overrides)`` builds the config of a row of ``presets``."""

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Any:
        """The config of preset ``name``; keyword arguments override any field (sub-config dicts are merged)."""
        if name not in cls.presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {tuple(cls.presets)}")
        return cls(**merge_overrides(cls.presets[name], overrides))
