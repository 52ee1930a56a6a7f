"""Mask helpers shared by every dataset builder: COCO RLE encode/decode, polygons, boxes.

Masks are stored in datasets as COCO RLE ``{"size": [h, w], "counts": str}`` and decoded only
when a sample is transformed (DESIGN.md, "Dataset rows").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a boolean (H, W) mask as COCO RLE with a ``str`` counts field."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects a 2-D (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _to_coco_rle(rle: dict) -> dict:
    counts = rle["counts"]
    h, w = (int(v) for v in rle["size"])
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Decode COCO RLE (compressed string/bytes or uncompressed list counts) to a bool (H, W) array."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(
            f"expected a COCO RLE dict with 'size' and 'counts', got {type(rle).__name__}: {rle!r:.80}"
        )
    return mask_utils.decode(_to_coco_rle(rle)).astype(bool)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """Rasterise COCO polygons (merged into one mask) to compressed RLE with ``str`` counts."""
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    rle = mask_utils.merge(rles)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """COCO box ``[x, y, w, h]`` (pixels) of the mask's foreground; ``[0, 0, 0, 0]`` when empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) + 1.0 - x0, float(ys.max()) + 1.0 - y0]


def merge_instances(instances: Sequence[dict], height: int, width: int) -> np.ndarray:
    """Union of the instance masks of one row (the GRES target); all-zero for no-target rows."""
    out = np.zeros((height, width), dtype=bool)
    for inst in instances:
        out |= decode_rle(inst["segmentation"])
    return out
