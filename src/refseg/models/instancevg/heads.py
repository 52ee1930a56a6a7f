"""Prediction heads of InstanceVG: the Point-guided Instance-aware Perception Head (PIPH, Sec. 3.3) and the global
segmentation branch's mask and no-target heads (Sec. 3.1, Fig. 2(b, c)).

* class head: ``Linear(C, 2)`` per decoder layer (index 0 = object, 1 = no object), shared by all layers;
* box head: a 3-layer MLP whose output is added to ``inverse_sigmoid`` of the reference point (Deformable DETR):
  ``b = sigmoid(MLP(Q_d) + [inverse_sigmoid(p_r), 0, 0])`` in ``(cx, cy, w, h)``, shared by all layers;
* instance masks ``Q_s = Q_d . S_global`` (Sec. 3.3), upsampled bilinearly (``align_corners=True``);
* global mask: a 1x1 convolution on ``S_global``, upsampled the same way;
* no-target head: a 3-layer MLP on every pixel of ``S_global``, averaged: two logits (target, no target).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.mlp import MLP


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(x / (1 - x))`` after clamping ``x`` to ``[0, 1]`` and both terms to ``>= eps`` (Deformable DETR).

    Reference points above 1 (the point prior allows up to 2) therefore map to ``log(1 / eps)``.
    """
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class BoxHead(MLP):
    """``sigmoid(MLP(states) + [inverse_sigmoid(reference), 0, 0])``: boxes ``(cx, cy, w, h)`` in ``[0, 1]``."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 4, 3)

    def forward(self, states: torch.Tensor, reference_points: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``states`` ``(B, N_q, C)``, ``reference_points`` ``(B, N_q, 2)`` -> ``(B, N_q, 4)``."""
        delta = super().forward(states)
        offset = torch.cat([inverse_sigmoid(reference_points), torch.zeros_like(reference_points)], dim=-1)
        return (delta + offset).sigmoid()


class NoTargetHead(MLP):
    """Per-pixel MLP on ``S_global`` averaged over pixels: ``(B, 2)`` logits (index 0 target, 1 no target)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 2, 3)

    def forward(self, global_features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(B, C, h, w)`` -> ``(B, 2)``."""
        return super().forward(global_features.flatten(2).transpose(1, 2)).mean(1)


class GlobalMaskHead(nn.Conv2d):
    """1x1 convolution ``C -> 1`` on ``S_global``, upsampled to the input size: ``(B, H, W)`` logits."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, 1, 1)

    def forward(self, global_features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        """``(B, C, h, w)`` -> ``(B, H, W)``."""
        logits = super().forward(global_features)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)[:, 0]


def instance_mask_logits(
    states: torch.Tensor, global_features: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``Q_s = Q_d . S_global``: ``(B, N_q, C)`` x ``(B, C, h, w)`` -> ``(B, N_q, H, W)`` (bilinear, corners aligned)."""
    masks = torch.einsum("bqc,bchw->bqhw", states, global_features)
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=True)


__all__ = ["BoxHead", "GlobalMaskHead", "NoTargetHead", "instance_mask_logits", "inverse_sigmoid"]
