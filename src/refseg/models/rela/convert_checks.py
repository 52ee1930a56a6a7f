"""What the ReLA converter checks before it converts: the file must be exactly the model its config describes.

The config is a preset (``swin-base``, ``swin-tiny`` or ``r50``, inferred from the backbone's keys and width,
or ``--preset``) with ``--config-overrides``. The sizes the file fixes are read from it (backbone, depths,
windows and heads, text encoder layers, width and vocabulary, pixel-decoder and decoder layers, widths, query
count, MLP depths) and must equal the config's: a file that lost its last decoder layer is refused, not
converted into a shallower model; the error says which override describes a custom model. Then every value
must be finite, every key of the released layout for that config (``rela_state_dict_to_original`` of the model
built on the meta device) present, no other key, and every tensor of the expected shape. Checkpoints of the
authors' ``original`` branch (the paper-version decoder, other names) are refused as such. Every error is one
``ValueError`` of one line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError

from ...modeling.pretrained.checkpoint_checks import (
    check_finite,
    check_keys,
    shape_message,
    shape_problems,
    short_list,
)
from ...modeling.pretrained.rela_keys import OPTIONAL_BUFFERS
from .configuration_rela import RelaConfig
from .convert_keys import ORIGINAL_PREDICTOR, rela_state_dict_to_original

__all__ = [
    "RELEASED_PRESETS",
    "checked_config",
    "config_value",
    "expected_layout",
    "infer_preset",
    "read_sizes",
]

#: the presets of the released checkpoints, by Swin width (the R-50 is told by its stem)
RELEASED_PRESETS = {128: "swin-base", 96: "swin-tiny"}
# names only the `original` branch of the authors' code has (the paper-version decoder)
_ORIGINAL_BRANCH = ("RIA_cross_attention", "self_attention_layers", "RLA_gate", "decoder_norm_2", "RLA_lang.")
_PD = "sem_seg_head.pixel_decoder."


def _refuse_original_branch(state_dict: dict[str, torch.Tensor]) -> None:
    found = [
        k for k in state_dict if k.startswith(ORIGINAL_PREDICTOR) and any(n in k for n in _ORIGINAL_BRANCH)
    ]
    if found:
        raise ValueError(
            f"the checkpoint has the paper-version decoder of the authors' `original` branch ({short_list(found, 3)}):"
            " another architecture than the released checkpoints (branch `main`), which refseg converts"
        )


def _require_backbone(state_dict: dict[str, torch.Tensor]) -> None:
    if (
        "backbone.stem.conv1.weight" not in state_dict
        and "backbone.patch_embed.proj.weight" not in state_dict
    ):
        raise ValueError(
            "not a ReLA checkpoint: it has neither a Swin (backbone.patch_embed.proj.weight) nor a ResNet-50 "
            "(backbone.stem.conv1.weight) backbone"
        )


def infer_preset(state_dict: dict[str, torch.Tensor]) -> str:
    """``r50`` for a ResNet stem, ``swin-base`` / ``swin-tiny`` by the Swin width; an error otherwise."""
    _require_backbone(state_dict)
    if "backbone.stem.conv1.weight" in state_dict:
        return "r50"
    width = state_dict["backbone.patch_embed.proj.weight"].shape[0]
    if width not in RELEASED_PRESETS:
        raise ValueError(
            f"the checkpoint's Swin has width {width}, not one of the released models' (128: swin-base, 96: "
            f"swin-tiny): pass --preset ({', '.join(RelaConfig.presets)}) and --config-overrides for its sizes"
        )
    return RELEASED_PRESETS[width]


def _indices(state_dict: dict[str, torch.Tensor], pattern: str) -> list[int]:
    return sorted({int(m[1]) for key in state_dict if (m := re.match(pattern, key))})


def _count(state_dict: dict[str, torch.Tensor], pattern: str) -> int | None:
    """Layers numbered ``0 .. n-1`` -> ``n`` (the highest index + 1; a gap shows as missing keys later)."""
    found = _indices(state_dict, pattern)
    return found[-1] + 1 if found else None


def _rows(state_dict: dict[str, torch.Tensor], key: str, dim: int = 0) -> int | None:
    tensor = state_dict.get(key)
    return int(tensor.shape[dim]) if tensor is not None and tensor.dim() > dim else None


def read_sizes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[Any, str]]:
    """Config field (``backbone_config.depths``, ``hidden_dim``, ...) -> (value the file fixes, the evidence).

    Fields whose evidence is absent from the file are left out (their keys are reported missing later).
    """
    sd, p = state_dict, ORIGINAL_PREDICTOR
    sizes: dict[str, tuple[Any, str]] = {}

    def put(field: str, value: Any, evidence: str) -> None:
        if value is not None and value != []:
            sizes[field] = (value, evidence)

    put("num_queries", _rows(sd, p + "query_feat.weight"), p + "query_feat.weight")
    put("hidden_dim", _rows(sd, p + "query_feat.weight", 1), p + "query_feat.weight")
    put("decoder_layers", _count(sd, rf"{re.escape(p)}(?:RIA_layers|RLA_vision|transformer_ffn_layers)\.(\d+)\."),
        p + "RIA_layers.*")  # fmt: skip
    put("decoder_ffn_dim", _rows(sd, p + "transformer_ffn_layers.0.linear1.weight"),
        p + "transformer_ffn_layers.0.linear1.weight")  # fmt: skip
    put(
        "mask_mlp_layers",
        _count(sd, rf"{re.escape(p)}mask_embed\.layers\.(\d+)\."),
        p + "mask_embed.layers.*",
    )
    put(
        "no_target_mlp_layers",
        _count(sd, rf"{re.escape(p)}nt_embed\.layers\.(\d+)\."),
        p + "nt_embed.layers.*",
    )
    put("mask_dim", _rows(sd, _PD + "mask_features.weight"), _PD + "mask_features.weight")
    put("pixel_decoder_layers", _count(sd, rf"{re.escape(_PD)}transformer\.encoder\.layers\.(\d+)\."),
        _PD + "transformer.encoder.layers.*")  # fmt: skip
    put("pixel_decoder_ffn_dim", _rows(sd, _PD + "transformer.encoder.layers.0.linear1.weight"),
        _PD + "transformer.encoder.layers.0.linear1.weight")  # fmt: skip
    words = "text_encoder.embeddings.word_embeddings.weight"
    put("text_config.vocab_size", _rows(sd, words), words)
    put("text_config.hidden_size", _rows(sd, words, 1), words)
    positions = "text_encoder.embeddings.position_embeddings.weight"
    put("text_config.max_position_embeddings", _rows(sd, positions), positions)
    types = "text_encoder.embeddings.token_type_embeddings.weight"
    put("text_config.type_vocab_size", _rows(sd, types), types)
    put("text_config.num_hidden_layers", _count(sd, r"text_encoder\.encoder\.layer\.(\d+)\."),
        "text_encoder.encoder.layer.*")  # fmt: skip
    ffn = "text_encoder.encoder.layer.0.intermediate.dense.weight"
    put("text_config.intermediate_size", _rows(sd, ffn), ffn)
    if "backbone.stem.conv1.weight" in sd:
        put(
            "backbone_config.embedding_size",
            _rows(sd, "backbone.stem.conv1.weight"),
            "backbone.stem.conv1.weight",
        )
        stages = range(2, 6)
        put("backbone_config.depths", [_count(sd, rf"backbone\.res{s}\.(\d+)\.") or 0 for s in stages],
            "backbone.res{2..5}.*")  # fmt: skip
        put("backbone_config.hidden_sizes", [_rows(sd, f"backbone.res{s}.0.conv3.weight") for s in stages],
            "backbone.res{2..5}.0.conv3.weight")  # fmt: skip
        put("encoder_fusion", "none", "backbone.stem.*")
        return sizes
    put(
        "backbone_config.embed_dim",
        _rows(sd, "backbone.patch_embed.proj.weight"),
        "backbone.patch_embed.proj.weight",
    )
    put("backbone_config.patch_size", _rows(sd, "backbone.patch_embed.proj.weight", 2),
        "backbone.patch_embed.proj.weight")  # fmt: skip
    stages = _indices(sd, r"backbone\.layers\.(\d+)\.blocks\.")
    depths = [
        _count(sd, rf"backbone\.layers\.{i}\.blocks\.(\d+)\.") or 0
        for i in range(max(stages, default=-1) + 1)
    ]
    put("backbone_config.depths", depths, "backbone.layers.*.blocks.*")
    tables = [
        sd.get(f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table") for i in range(len(depths))
    ]
    if tables and all(t is not None and t.dim() == 2 for t in tables):
        evidence = "backbone.layers.*.blocks.0.attn.relative_position_bias_table"
        put("backbone_config.num_heads", [int(t.shape[1]) for t in tables], evidence)
        side = round(tables[0].shape[0] ** 0.5)
        if side * side == tables[0].shape[0] and side % 2:
            put("backbone_config.window_size", (side + 1) // 2, evidence)
    gates = _indices(sd, r"backbone\.layers\.(\d+)\.res_gate\.")
    put("pwam_gate_stages", gates, "backbone.layers.*.res_gate.*")
    fused = _indices(sd, r"backbone\.layers\.(\d+)\.fusion\.")
    put("encoder_fusion", "pwam" if fused else "none", "backbone.layers.*.fusion.*")
    return sizes


def config_value(config: RelaConfig, field: str) -> Any:
    """The value of a dotted config field (``backbone_config.depths``), tuples as lists."""
    value: Any = config
    for part in field.split("."):
        value = getattr(value, part, None)
    return list(value) if isinstance(value, tuple) else value


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"text_config.vocab_size": 5}`` -> ``{"text_config": {"vocab_size": 5}}`` (the overrides' form)."""
    nested: dict[str, Any] = {}
    for field, value in values.items():
        head, _, tail = field.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested


def _overridden(overrides: dict[str, Any], field: str) -> bool:
    head, _, tail = field.partition(".")
    return head in overrides and (
        not tail or not isinstance(overrides[head], dict) or tail in overrides[head]
    )


def build_config(preset: str, overrides: dict[str, Any]) -> RelaConfig:
    """``RelaConfig.preset(preset, **overrides)``; an unknown field or an invalid value is one-line error."""
    if preset not in RelaConfig.presets:
        raise ValueError(
            f"--preset {preset!r} is not a ReLA preset; choose one of {', '.join(RelaConfig.presets)}"
        )
    unknown = sorted(set(overrides) - set(RelaConfig.preset(preset).to_dict()))
    if unknown:
        raise ValueError(f"--config-overrides: unknown ReLA config field(s): {', '.join(unknown)}")
    try:
        return RelaConfig.preset(preset, **overrides)
    except (TypeError, ValueError, StrictDataclassError) as error:
        raise ValueError(f"--config-overrides: {' '.join(str(error).split())}") from error


def expected_layout(config: RelaConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the released checkpoint of the model ``config`` describes (built on the meta device)."""
    from .modeling_rela import RelaForReferringSegmentation

    with torch.device("meta"):
        model = RelaForReferringSegmentation(config)
    windows = None
    if config.encoder_fusion == "pwam":
        windows = dict.fromkeys(range(4), config.backbone_config.window_size)
    original = rela_state_dict_to_original(model.state_dict(), windows)
    return {key: tuple(tensor.shape) for key, tensor in original.items()}


def checked_config(
    state_dict: dict[str, torch.Tensor], preset: str | None = None, overrides: dict[str, Any] | None = None
) -> RelaConfig:
    """The config of the checkpoint after every check of this module; raises a one-line ``ValueError`` else."""
    overrides = dict(overrides or {})
    _refuse_original_branch(state_dict)
    _require_backbone(state_dict)
    chosen = preset or infer_preset(state_dict)
    config = build_config(chosen, overrides)
    source = f"{chosen} preset" + (" with --config-overrides" if overrides else "")
    differing = {}
    for field, (value, evidence) in read_sizes(state_dict).items():
        expected = config_value(config, field)
        if expected == value:
            continue
        if _overridden(overrides, field):
            raise ValueError(
                f"--config-overrides contradicts the weights: it sets {field} = {expected}, the checkpoint has "
                f"{value} ({evidence})"
            )
        differing[field] = (value, evidence, expected)
    if differing:
        shown = "; ".join(
            f"{field} = {value} ({evidence}), the {source} has {expected}"
            for field, (value, evidence, expected) in list(differing.items())[:4]
        )
        more = f" (and {len(differing) - 4} more)" if len(differing) > 4 else ""
        needed = json.dumps(_nested({field: value for field, (value, _, _) in differing.items()}))
        raise ValueError(
            f"the checkpoint has {shown}{more}: the file is incomplete or another model (for a model of those "
            f"sizes pass --config-overrides '{needed}')"
        )
    check_finite(state_dict)
    layout = expected_layout(config)
    state_dict = {k: v for k, v in state_dict.items() if not OPTIONAL_BUFFERS.fullmatch(k)}
    check_keys(state_dict, layout, source, "ReLA")
    problems = shape_problems(state_dict, layout)
    if problems:
        raise ValueError(shape_message(problems, source))
    return config
