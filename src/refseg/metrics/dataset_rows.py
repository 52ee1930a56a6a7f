"""Records of one prediction against one dataset row (the row schema of ``docs/data.md``), at the original image size.

The row gives the ground truth: ``instances`` (COCO RLE masks, ``bbox`` ``[x, y, w, h]`` in original
pixels), ``no_target`` and ``ref_id``; the prediction is a post-processed dict (``mask`` at the original
size, ``no_target``, ``instances`` with ``box`` / ``score``). Metrics computed from these records are at
``resolution="original"``; paper protocols that evaluate at a resized square (ReLA 480x480,
InstanceVG 320x320) need both masks at that size and ``segmentation_record`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data.masks import decode_rle, rle_size
from .grec import GRECRecord, grec_record_from_prediction
from .mask_records import MaskRecord, segmentation_record
from .rec import RECRecord, rec_record_from_prediction


def _field(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise ValueError(f"dataset row has no {name!r} field (fields: {sorted(row)})")
    return row[name]


def row_gt_mask(row: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """Merged ground-truth mask (union of the row's instances), bool ``(height, width)``.

    Each RLE's claimed size is compared with ``(height, width)`` before it is decoded (a few characters can
    claim a mask of billions of pixels)."""
    out = np.zeros((height, width), dtype=bool)
    for k, inst in enumerate(_field(row, "instances")):
        rle = inst["segmentation"]
        claimed = rle_size(rle, f"instance {k}")
        if claimed != (height, width):
            raise ValueError(
                f"instance {k} of row (ref_id={row.get('ref_id')}, sent_id={row.get('sent_id')}) has an RLE of size "
                f"{claimed}, but the predicted mask is {(height, width)}; post-process to the original size"
            )
        out |= decode_rle(rle, (height, width), f"instance {k}")
    return out


def row_gt_boxes(row: Mapping[str, Any]) -> np.ndarray:
    """``(N, 4)`` ``xyxy`` ground-truth boxes of the row's instances (``N = 0`` when none)."""
    boxes = np.asarray([inst["bbox"] for inst in _field(row, "instances")], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def segmentation_record_for_row(prediction: Mapping[str, Any], row: Mapping[str, Any]) -> MaskRecord:
    """``MaskRecord`` of a prediction dict against a row; flags and ``ref_id`` come from the row."""
    if "mask" not in prediction:
        raise ValueError(f"prediction dict has no 'mask' key (keys: {sorted(prediction)})")
    height, width = tuple(prediction["mask"].shape[-2:])
    gt = row_gt_mask(row, int(height), int(width))
    return segmentation_record(
        prediction, gt, gt_no_target=bool(_field(row, "no_target")), ref_id=int(row.get("ref_id", -1))
    )


def grec_record_for_row(prediction: Mapping[str, Any], row: Mapping[str, Any], **kwargs: Any) -> GRECRecord:
    """``GRECRecord`` of a prediction dict's instances against the row's boxes (kwargs: thresholds)."""
    return grec_record_from_prediction(
        prediction, row_gt_boxes(row), gt_no_target=bool(_field(row, "no_target")), **kwargs
    )


def rec_record_for_row(prediction: Mapping[str, Any], row: Mapping[str, Any], **kwargs: Any) -> RECRecord:
    """``RECRecord`` of a prediction dict's top box against the row's single box (kwargs: ``iou_type``)."""
    return rec_record_from_prediction(prediction, row_gt_boxes(row), **kwargs)
