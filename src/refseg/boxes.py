"""Bounding boxes: format conversions, IoU and generalized IoU (Rezatofighi et al., CVPR 2019), and the
boxes of binary masks. Pure tensor math shared by the models, their post-processing and the metrics.

Boxes are ``(N, 4)`` tensors. ``xyxy`` = ``[x0, y0, x1, y1]``, ``cxcywh`` = ``[cx, cy, w, h]`` (the
normalized layout of the models' ``pred_boxes`` output), ``xywh`` = COCO ``[x, y, w, h]``. Coordinates are
continuous (no "+1" pixel convention), as in DETR / MDETR ``util/box_ops.py``, which the official GREC
evaluator uses.
"""

from __future__ import annotations

import torch

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "generalized_box_iou",
    "masks_to_boxes",
]


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[cx, cy, w, h]`` -> ``[x0, y0, x1, y1]``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[x0, y0, x1, y1]`` -> ``[cx, cy, w, h]``."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """COCO ``[x, y, w, h]`` -> ``[x0, y0, x1, y1]``."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def _check_xyxy(boxes: torch.Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")
    if not bool((boxes[:, 2:] >= boxes[:, :2]).all()):
        raise ValueError(f"{name} must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, got {boxes.tolist()}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``xyxy`` boxes, shape ``(N,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU and union area of ``xyxy`` boxes: two ``(N, M)`` tensors.

    Two zero-area boxes have union 0 and IoU ``nan`` (as in DETR).
    """
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU ``IoU - (|C| - |A u B|) / |C|`` of ``xyxy`` boxes, shape ``(N, M)``.

    ``C`` is the smallest box enclosing both (GIoU paper, Algorithm 1). Values lie in ``[-1, 1]``
    and GIoU <= IoU. Malformed boxes (x1 < x0 or y1 < y0) raise ``ValueError``.
    """
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes ``[x0, y0, x1, y1]`` in pixels (x1, y1 exclusive) of bool masks (N, H, W); zeros when empty.

    Every model's post-processing derives instance boxes this way when it has no box head (``docs/pipeline.md``).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks_to_boxes expects (N, H, W) masks, got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    boxes = torch.zeros((n, 4), dtype=torch.float32)
    if n == 0:
        return boxes
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    ar_h = torch.arange(h)
    ar_w = torch.arange(w)
    nonempty = rows.any(dim=1)
    y0 = torch.where(rows, ar_h, h).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    x0 = torch.where(cols, ar_w, w).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    stacked = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    boxes[nonempty] = stacked[nonempty]
    return boxes
