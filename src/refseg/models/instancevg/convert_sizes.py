"""The model sizes that a released-layout InstanceVG checkpoint fixes, read from its tensor shapes.

Each size is read from one tensor (its *evidence*), except the encoder width, which is the most common width
among six tensors so that one damaged tensor cannot change it. Layer counts are ``1 + the highest layer index``
so that a gap shows as a missing layer. Used by :mod:`refseg.models.instancevg.convert_checks`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import torch

ENCODER_PREFIX = "vis_enc.beit3."
ENCODER_LAYER = re.compile(r"vis_enc\.beit3\.encoder\.layers\.(\d+)\.")
DECODER_LAYER = re.compile(r"head\.decoder_transformer\.decoder\.layers\.(\d+)\.")
WIDTH_EVIDENCE = (
    (ENCODER_PREFIX + "text_embed.weight", 1),
    (ENCODER_PREFIX + "vision_embed.proj.weight", 0),
    (ENCODER_PREFIX + "vision_embed.cls_token", -1),
    (ENCODER_PREFIX + "encoder.layer_norm.A.weight", 0),
    (ENCODER_PREFIX + "encoder.embed_positions.A.weight", 1),
    ("head.lan_embedding.weight", 1),
)
_DECODER_OFFSETS = "head.decoder_transformer.decoder.layers.0.attentions.1.sampling_offsets.weight"
_E = re.escape(ENCODER_PREFIX)
_T2I_FFN = r"head\.query_generation\.T2I_decoder\.layers\.0\.ffns\.0\.layers\."
_DEC_FFN = r"head\.decoder_transformer\.decoder\.layers\.\d+\.ffns\.0\.layers\."
# config field ("encoder_config.x" for the encoder) -> (key pattern, dimension) of every tensor that carries it;
# the most common value wins, so that one damaged (e.g. transposed) tensor is blamed, not believed.
_EVIDENCE = {
    "encoder_config.vocab_size": [(_E + r"text_embed\.weight", 0)],
    "encoder_config.intermediate_size": [
        (_E + r"encoder\.layers\.\d+\.ffn\.[AB]\.fc1\.weight", 0),
        (_E + r"encoder\.layers\.\d+\.ffn\.[AB]\.fc2\.weight", 1),
    ],
    "encoder_config.patch_size": [(_E + r"vision_embed\.proj\.weight", -1)],
    "encoder_config.max_text_positions": [(_E + r"encoder\.embed_positions\.B\.weight", 0)],
    "hidden_channels": [
        (r"head\.img_embedding\.weight", 0),
        (r"head\.lan_embedding\.weight", 0),
        (r"head\.query_embedding\.weight", 0),
        (r"head\.query_generation\.query_embed\.weight", 1),
        (r"head\.decoder_transformer\.reference_points\.weight", 1),
    ],
    "num_queries": [(r"head\.query_generation\.query_embed\.weight", 0)],
    "t2i_ffn_dim": [(_T2I_FFN + r"0\.0\.weight", 0), (_T2I_FFN + r"1\.weight", 1)],
    "decoder_ffn_dim": [(_DEC_FFN + r"0\.0\.weight", 0), (_DEC_FFN + r"1\.weight", 1)],
}


def _majority(state_dict: dict[str, torch.Tensor], patterns: list[tuple[str, int]]) -> tuple[int, str] | None:
    """The most common size among the tensors matching ``patterns``, with one of them as evidence."""
    found: list[tuple[int, str]] = []
    for pattern, dim in patterns:
        compiled = re.compile(pattern)
        for key, tensor in state_dict.items():
            if compiled.fullmatch(key) and tensor.dim() > max(dim, -dim - 1):
                found.append((tensor.shape[dim], f"{key} {tuple(tensor.shape)}"))
    if not found:
        return None
    size = Counter(size for size, _ in found).most_common(1)[0][0]
    return size, next(evidence for value, evidence in found if value == size)


def encoder_width(state_dict: dict[str, torch.Tensor]) -> int | None:
    """The most common encoder width among the tensors that carry it (None if none is present)."""
    widths = [
        state_dict[k].shape[d] for k, d in WIDTH_EVIDENCE if k in state_dict and state_dict[k].dim() > 0
    ]
    return Counter(widths).most_common(1)[0][0] if widths else None


def layer_count(state_dict: dict[str, torch.Tensor], pattern: re.Pattern[str]) -> int:
    """``1 +`` the highest layer index present (0 without layers)."""
    return 1 + max((int(m[1]) for key in state_dict if (m := pattern.match(key))), default=-1)


def read_sizes(state_dict: dict[str, torch.Tensor], decoder_heads: int) -> dict[str, tuple[int, str]]:
    """Config field -> (size, evidence) for every size the present tensors fix."""
    sizes: dict[str, tuple[int, str]] = {}
    width = encoder_width(state_dict)
    if width is not None:
        sizes["encoder_config.hidden_size"] = (width, "the encoder's embeddings")
    for field, patterns in _EVIDENCE.items():
        if (found := _majority(state_dict, patterns)) is not None:
            sizes[field] = found
    positions = state_dict.get(ENCODER_PREFIX + "encoder.embed_positions.A.weight")
    if positions is not None and positions.dim() == 2 and "encoder_config.patch_size" in sizes:
        grid = math.isqrt(max(positions.shape[0] - 3, 0))
        evidence = f"{ENCODER_PREFIX}encoder.embed_positions.A.weight {tuple(positions.shape)}"
        size = grid * sizes["encoder_config.patch_size"][0]
        sizes["image_size"] = sizes["encoder_config.image_size"] = (size, evidence)
    sizes["encoder_config.num_hidden_layers"] = (layer_count(state_dict, ENCODER_LAYER), "its encoder layers")
    sizes["decoder_layers"] = (layer_count(state_dict, DECODER_LAYER), "its decoder layers")
    offsets = state_dict.get(_DECODER_OFFSETS)
    if offsets is not None and offsets.dim() == 2:
        points = offsets.shape[0] // (decoder_heads * 4 * 2)
        sizes["decoder_num_points"] = (points, f"{_DECODER_OFFSETS} {tuple(offsets.shape)}")
    return sizes


def as_config_values(sizes: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """``read_sizes`` output as ``InstanceVGConfig.preset`` keyword arguments (``encoder_config`` nested)."""
    values: dict[str, Any] = {"encoder_config": {}}
    for field, (size, _) in sizes.items():
        if field.startswith("encoder_config."):
            values["encoder_config"][field.split(".", 1)[1]] = size
        else:
            values[field] = size
    return values


__all__ = ["as_config_values", "encoder_width", "layer_count", "read_sizes"]
