"""Instances of a semantic (union) mask as its connected components, for models without instance queries.

A model that predicts only the union mask of the referred objects (e.g. METRIS) reports each 8-connected
region of that mask as an instance (docs/pipeline.md lists the output format), with a box from the region
and, as score, the mean foreground probability inside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..boxes import masks_to_boxes

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def connected_component_instances(
    mask: torch.Tensor, probabilities: torch.Tensor | None = None, min_area: int = 1
) -> list[dict[str, Any]]:
    """Split a bool (H, W) mask into its 8-connected components (``scipy.ndimage.label``).

    Args:
        mask: bool (H, W).
        probabilities: optional (H, W) foreground probabilities; an instance's score is their mean over it
            (1.0 without them).
        min_area: components with fewer pixels are dropped.

    Returns:
        ``[{"mask": bool (H, W), "box": float [x0, y0, x1, y1] (x1, y1 exclusive), "score": float}]`` sorted by
        decreasing score, then by decreasing area.
    """
    labels, count = ndimage.label(mask.detach().cpu().numpy().astype(bool), structure=_EIGHT_CONNECTED)
    if count == 0:
        return []
    labels = torch.from_numpy(labels)
    masks = labels[None] == torch.arange(1, count + 1)[:, None, None]
    areas = masks.flatten(1).sum(1)
    masks = masks[areas >= min_area]
    areas = areas[areas >= min_area]
    if probabilities is None:
        scores = torch.ones(len(masks))
    else:
        probs = probabilities.detach().cpu().float()
        scores = (masks * probs).flatten(1).sum(1) / areas.clamp(min=1)
    order = sorted(range(len(masks)), key=lambda i: (-float(scores[i]), -int(areas[i])))
    boxes = masks_to_boxes(masks)
    return [{"mask": masks[i], "box": boxes[i], "score": float(scores[i])} for i in order]
