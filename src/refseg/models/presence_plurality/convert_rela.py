"""Start from a ReLA checkpoint: map its encoder and pixel-decoder weights onto the presence & plurality model.

ReLA (Liu, Ding, Jiang, "GRES", CVPR 2023; code: henghuiding/ReLA, MIT) has the same multimodal Swin (PWAM and
gates on stages 1-3), BERT-base text encoder and Mask2Former pixel decoder as this model (Kim et al., AAAI 2026,
Sec. 3.1), so its public gRefCOCO checkpoints give real weights for everything except the target query and the
heads (ReLA's region decoder, ``sem_seg_head.predictor.*``, has no counterpart and is dropped).

The mapping (detectron2 names on the left, this model's on the right):

| ReLA | refseg |
|---|---|
| ``backbone.patch_embed.{proj,norm}`` | ``model.backbone.model.swin.embeddings.{patch_embeddings.projection,norm}`` |
| ``backbone.layers.i.blocks.j.{norm1,norm2}`` | ``...encoder.layers.i.blocks.j.{layernorm_before,layernorm_after}`` |
| ``backbone.layers.i.blocks.j.attn.qkv`` | split into ``attention.{q,k,v}_proj`` |
| ``backbone.layers.i.blocks.j.attn.{proj,relative_position_bias_table}`` | ``attention.{o_proj,relative_position_bias.relative_position_bias_table}`` |
| ``backbone.layers.i.blocks.j.mlp.{fc1,fc2}`` | same under ``...blocks.j.mlp`` |
| ``backbone.layers.i.downsample.{reduction,norm}`` | ``...encoder.layers.i.downsample.{reduction,norm}`` |
| ``backbone.norm{i}`` | ``model.backbone.model.hidden_states_norms.stage{i+1}`` |
| ``backbone.layers.i.fusion.{vis_project.0,project_mm.0}`` | ``model.backbone.pixel_word_attention.i.{visual,multimodal}_projection`` |
| ``backbone.layers.i.fusion.image_lang_att.{f_query,f_key,f_value,W}.0`` | ``...{query,key,value,output}_projection`` |
| ``backbone.layers.i.res_gate.{0,2}`` | ``model.backbone.language_gates.i.{fc1,fc2}`` |
| ``sem_seg_head.pixel_decoder.input_proj.k.{0,1}`` | ``model.pixel_decoder.input_projections.k.{0,1}`` |
| ``sem_seg_head.pixel_decoder.transformer.level_embed`` | ``model.pixel_decoder.level_embed`` |
| ``...transformer.encoder.layers.k.{self_attn.*,norm1,linear1,linear2,norm2}`` | ``model.pixel_decoder.layers.k.{self_attn.*,self_attn_layer_norm,fc1,fc2,final_layer_norm}`` |
| ``sem_seg_head.pixel_decoder.{adapter_1,layer_1}`` (+ ``.norm``) | ``model.pixel_decoder.{lateral_convs,output_convs}.0.{0,1}`` |
| ``sem_seg_head.pixel_decoder.mask_features`` | ``model.pixel_decoder.mask_projection`` |
| ``text_encoder.*`` | ``model.text_encoder.model.*`` |

1x1 ``Conv1d`` weights ``(out, in, 1)`` become ``Linear`` weights ``(out, in)``. Dropped on purpose:
``sem_seg_head.predictor.*`` (ReLA's decoder), ``*.relative_position_index`` (a recomputed buffer),
``text_encoder.pooler.*`` and ``criterion.*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...modeling.pretrained.files import read_state_dict

DROPPED_PREFIXES = ("sem_seg_head.predictor.", "text_encoder.pooler.", "criterion.")

_SWIN = "model.backbone.model.swin."
_FUSION = {
    "vis_project.0": "visual_projection",
    "project_mm.0": "multimodal_projection",
    "image_lang_att.f_query.0": "query_projection",
    "image_lang_att.f_key.0": "key_projection",
    "image_lang_att.f_value.0": "value_projection",
    "image_lang_att.W.0": "output_projection",
}
_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.o_proj",
    "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_DECODER_LAYER = {
    "norm1": "self_attn_layer_norm",
    "linear1": "fc1",
    "linear2": "fc2",
    "norm2": "final_layer_norm",
}
_DECODER = {
    "adapter_1.weight": "lateral_convs.0.0.weight",
    "adapter_1.norm.weight": "lateral_convs.0.1.weight",
    "adapter_1.norm.bias": "lateral_convs.0.1.bias",
    "layer_1.weight": "output_convs.0.0.weight",
    "layer_1.norm.weight": "output_convs.0.1.weight",
    "layer_1.norm.bias": "output_convs.0.1.bias",
    "mask_features.weight": "mask_projection.weight",
    "mask_features.bias": "mask_projection.bias",
    "transformer.level_embed": "level_embed",
}


@dataclass
class ReLAConversionReport:
    """What :func:`convert_rela_state_dict` / :func:`load_rela_checkpoint` did.

    Attributes:
        mapped: ReLA keys that were mapped (``qkv`` counts once).
        dropped: ReLA keys dropped on purpose (region decoder, index buffers, pooler, criterion).
        unexpected: ReLA keys with no rule (an error unless ``strict=False``).
        missing: model keys the checkpoint does not provide (target query, heads, ...), after loading.
    """

    mapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _rename(key: str) -> str | None:
    """The refseg key of a ReLA key (``None`` when no rule applies; ``qkv`` is handled by the caller)."""
    if key.startswith("text_encoder."):
        return "model.text_encoder.model." + key[len("text_encoder.") :]
    if m := re.fullmatch(r"backbone\.patch_embed\.(proj|norm)\.(weight|bias)", key):
        part = "patch_embeddings.projection" if m[1] == "proj" else "norm"
        return f"{_SWIN}embeddings.{part}.{m[2]}"
    if m := re.fullmatch(r"backbone\.norm(\d)\.(weight|bias)", key):
        return f"model.backbone.model.hidden_states_norms.stage{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)", key):
        if m[3] in _BLOCK:
            return f"{_SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.{_BLOCK[m[3]]}.{m[4]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table", key):
        return f"{_SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.{_BLOCK['attn.relative_position_bias_table']}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)", key):
        return f"{_SWIN}encoder.layers.{m[1]}.downsample.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.fusion\.(.+)\.(weight|bias)", key):
        if m[2] in _FUSION:
            return f"model.backbone.pixel_word_attention.{m[1]}.{_FUSION[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.res_gate\.([02])\.weight", key):
        return f"model.backbone.language_gates.{m[1]}.fc{1 if m[2] == '0' else 2}.weight"
    prefix = "sem_seg_head.pixel_decoder."
    if key.startswith(prefix):
        rest = key[len(prefix) :]
        if rest in _DECODER:
            return f"model.pixel_decoder.{_DECODER[rest]}"
        if m := re.fullmatch(r"input_proj\.(\d+)\.([01])\.(weight|bias)", rest):
            return f"model.pixel_decoder.input_projections.{m[1]}.{m[2]}.{m[3]}"
        if m := re.fullmatch(r"transformer\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", rest):
            name = _DECODER_LAYER.get(m[2], m[2] if m[2].startswith("self_attn.") else None)
            if name is not None:
                return f"model.pixel_decoder.layers.{m[1]}.{name}.{m[3]}"
    return None


def convert_rela_state_dict(
    rela_state: dict[str, torch.Tensor], strict: bool = True
) -> tuple[dict[str, torch.Tensor], ReLAConversionReport]:
    """ReLA (detectron2) state dict -> state dict of ``PresencePluralityForReferringSegmentation`` (partial).

    Raises ``ValueError`` listing the keys no rule covers when ``strict`` (every key must be mapped or dropped).
    """
    report = ReLAConversionReport()
    state: dict[str, torch.Tensor] = {}
    for key, value in rela_state.items():
        value = torch.as_tensor(value)
        if key.startswith(DROPPED_PREFIXES) or key.endswith("relative_position_index"):
            report.dropped.append(key)
            continue
        if m := re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key):
            base = f"{_SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.attention"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                state[f"{base}.{name}.{m[3]}"] = part.clone()
            report.mapped.append(key)
            continue
        new = _rename(key)
        if new is None:
            report.unexpected.append(key)
            continue
        if ".fusion." in key and value.dim() == 3:  # Conv1d 1x1 -> Linear
            value = value[..., 0]
        state[new] = value
        report.mapped.append(key)
    if strict and report.unexpected:
        shown = ", ".join(report.unexpected[:10])
        raise ValueError(f"{len(report.unexpected)} ReLA key(s) have no mapping: {shown}")
    return state, report


def load_rela_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> ReLAConversionReport:
    """Load a ReLA checkpoint file (``torch.save`` of ``{"model": state_dict}`` or a bare state dict) into a
    ``PresencePluralityForReferringSegmentation`` in place, safely (``weights_only=True``).

    Shapes must match (build the model with ReLA's Swin-B / BERT-base config, the paper default); the report
    lists the model keys left as they were (``missing``: the target query, the heads, the Swin's unused final
    LayerNorm).
    """
    rela_state = read_state_dict(path, what="ReLA checkpoint")
    state, report = convert_rela_state_dict(rela_state, strict=strict)
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    if unknown:
        raise ValueError(
            f"the converted keys {unknown[:10]} do not exist in the model; is it a presence_plurality model?"
        )
    mismatched = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"the ReLA checkpoint does not fit the model's config: {mismatched[:10]}")
    model.load_state_dict(state, strict=False)
    report.missing = sorted(k for k in own if k not in state)
    return report


__all__ = ["ReLAConversionReport", "convert_rela_state_dict", "load_rela_checkpoint"]
