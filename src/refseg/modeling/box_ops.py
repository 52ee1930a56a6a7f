"""Box conversions, IoU and generalized IoU (Rezatofighi et al., CVPR 2019), shared by models and metrics.

Boxes are ``(N, 4)`` tensors. ``xyxy`` = ``[x0, y0, x1, y1]``, ``cxcywh`` = ``[cx, cy, w, h]`` (the
normalized layout of the models' ``pred_boxes`` output), ``xywh`` = COCO ``[x, y, w, h]``. Coordinates are
continuous (no "+1" pixel convention), as in DETR / MDETR ``util/box_ops.py``, which the official GREC
evaluator uses.
"""

from __future__ import annotations

import torch


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
