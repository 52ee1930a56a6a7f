"""Mask non-maximum suppression of a sample's predicted instances (issue 24).

A query-based model can segment one object with two queries: the instance list then holds two
near-identical masks (boxes a pixel apart). :func:`mask_nms` keeps, in decreasing score order, every
instance whose mask IoU with each instance already kept is at most ``iou_threshold`` and drops the others.
It only filters the instance list; the union / semantic mask, the no-target decision and the GRES metrics
computed from them are unchanged (``docs/pipeline.md``).

Every model's ``post_process_referring_segmentation`` takes ``instance_nms_threshold``: ``None`` or ``1.0``
turns suppression off (no IoU exceeds 1), a number in ``[0, 1)`` turns it on. Its default is set per model
from its paper (``docs/models/<model>.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..validation import check_probability

__all__ = ["check_nms_threshold", "mask_iou_matrix", "mask_nms", "suppress_duplicate_instances"]

#: pixels per chunk of the intersection matmul: float32 counts stay exact (< 2**24) and the float copy of the
#: masks stays at ``N * 1 MiB`` whatever the image size
_CHUNK_PIXELS = 1 << 18  # 1 MiB per mask as float32


def check_nms_threshold(value: Any, name: str = "instance_nms_threshold") -> float | None:
    """``None`` (suppression off) or a finite number in [0, 1] -> ``None`` or float; ``1.0`` also means off."""
    if value is None:
        return None
    return check_probability(value, name)


def mask_iou_matrix(masks: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Pairwise IoU ``(N, N)`` (float64) of ``N`` binary masks: a ``(N, H, W)`` tensor or a sequence of
    ``(H, W)`` masks of one size (any dtype; nonzero = foreground).

    Counted exactly (integer pixel counts) in chunks of pixels, so the extra memory is ``N`` float32 chunks
    (1 MiB each), not a copy of the masks; a pair whose union is empty (two empty masks) has IoU 0.
    """
    if isinstance(masks, torch.Tensor):
        masks = list(masks)  # (N, H, W) -> N x (H, W)
    flat = [m.reshape(-1) for m in masks]  # views of contiguous masks, N x (H * W)
    n, pixels = len(flat), (flat[0].numel() if flat else 0)
    inter = torch.zeros((n, n), dtype=torch.float64)
    area = torch.zeros(n, dtype=torch.float64)
    for start in range(0, pixels, _CHUNK_PIXELS):
        chunk = torch.stack([(f[start : start + _CHUNK_PIXELS] != 0) for f in flat]).float()
        inter += (chunk @ chunk.T).double()
        area += chunk.sum(1).double()
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def mask_nms(
    masks: torch.Tensor | Sequence[torch.Tensor], scores: torch.Tensor, iou_threshold: float | None
) -> torch.Tensor:
    """Indices (int64, in decreasing score order) of the instances that mask NMS keeps.

    Instances are visited by decreasing score (equal scores: lower index first). An instance is dropped when
    its mask IoU with an instance already *kept* exceeds ``iou_threshold`` (strictly); a dropped instance
    suppresses nothing. ``iou_threshold`` ``None`` or ``1.0`` keeps every instance (still sorted).

    Args:
        masks: ``(N, H, W)`` binary masks, or a sequence of ``(H, W)`` ones.
        scores: ``(N,)`` scores (finite).
        iou_threshold: ``None`` or a number in [0, 1].
    """
    scores = torch.as_tensor(scores).reshape(-1)  # (N,)
    order = torch.argsort(scores.double(), descending=True, stable=True)
    if iou_threshold is None or iou_threshold >= 1.0 or order.numel() < 2:
        return order
    iou = mask_iou_matrix([masks[i] for i in order.tolist()])
    over = iou > iou_threshold
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    kept = []
    for i in range(order.numel()):  # greedy: only kept instances suppress; rows are vectorised
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= over[i]
    return order[torch.tensor(kept, dtype=torch.long)]


def suppress_duplicate_instances(
    instances: Sequence[dict[str, Any]], iou_threshold: float | None
) -> list[dict[str, Any]]:
    """Mask NMS on a sample's contract instances ``[{"mask": bool (H, W), "box", "score"}]``.

    Returns the kept instance dicts (the same objects) by decreasing score; ``None`` / ``1.0`` returns them
    all, in their order.
    """
    instances = list(instances)  # the image processors check iou_threshold (check_nms_threshold)
    if iou_threshold is None or iou_threshold >= 1.0 or len(instances) < 2:
        return instances
    masks = [torch.as_tensor(inst["mask"]) for inst in instances]  # not stacked: no copy of the masks
    scores = torch.tensor([float(inst["score"]) for inst in instances], dtype=torch.float64)
    return [instances[i] for i in mask_nms(masks, scores, iou_threshold).tolist()]
