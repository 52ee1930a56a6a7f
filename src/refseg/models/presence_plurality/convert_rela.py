"""Start from a ReLA checkpoint: map its encoder and pixel-decoder weights onto the presence & plurality model.

ReLA (Liu, Ding, Jiang, "GRES", CVPR 2023; code: henghuiding/ReLA, MIT) has the same multimodal Swin (PWAM and
gates on stages 1-3), BERT-base text encoder and Mask2Former pixel decoder as this model (Kim et al., AAAI 2026,
Sec. 3.1), so its public gRefCOCO checkpoints give real weights for everything except the target query and the
heads (ReLA's region decoder, ``sem_seg_head.predictor.*``, has no counterpart and is dropped).

The key map is shared with the ReLA model (:mod:`refseg.modeling.pretrained.rela_keys`, which has the table):
Swin (``attn.qkv`` split into ``q/k/v_proj``, PWAM's 1x1 ``Conv1d`` weights as ``Linear`` weights), language
gates, pixel decoder and BERT. Dropped on purpose: ``sem_seg_head.predictor.*`` (ReLA's decoder),
``text_encoder.pooler.*``, ``criterion.*`` and the buffers refseg recomputes (Swin's ``relative_position_index``,
BERT's ``position_ids``, checked first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...modeling.pretrained.files import read_state_dict
from ...modeling.pretrained.rela_keys import (
    RECOMPUTED_BUFFERS,
    check_recomputed_buffer,
    encoder_state_dict_from_rela,
)

DROPPED_PREFIXES = ("sem_seg_head.predictor.", "text_encoder.pooler.", "criterion.")


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


def convert_rela_state_dict(
    rela_state: dict[str, torch.Tensor], strict: bool = True
) -> tuple[dict[str, torch.Tensor], ReLAConversionReport]:
    """ReLA (detectron2) state dict -> state dict of ``PresencePluralityForReferringSegmentation`` (partial).

    Raises ``ValueError`` listing the keys no rule covers when ``strict`` (every key must be mapped or dropped).
    """
    report = ReLAConversionReport()
    kept = {}
    for key, value in rela_state.items():
        if RECOMPUTED_BUFFERS.fullmatch(key):
            check_recomputed_buffer(key, torch.as_tensor(value))
            report.dropped.append(key)
        elif key.startswith(DROPPED_PREFIXES):
            report.dropped.append(key)
        else:
            kept[key] = value
    state, report.mapped, report.unexpected = encoder_state_dict_from_rela(kept)
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
