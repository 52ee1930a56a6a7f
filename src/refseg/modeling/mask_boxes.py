"""Bounding boxes of binary masks, shared by every model's post-processing (``docs/pipeline.md``)."""

from __future__ import annotations

import torch

__all__ = ["masks_to_boxes"]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes ``[x0, y0, x1, y1]`` in pixels (x1, y1 exclusive) of bool masks (N, H, W); zeros when empty."""
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
