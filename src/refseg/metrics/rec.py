"""REC metric (RefCOCO / RefCOCO+ / RefCOCOg boxes): Precision@0.5 of the top-scoring box.

Per expression the highest-scoring predicted box is compared with the single GT box; it is correct iff
``IoU >= 0.5``; ``Precision@0.5 = 100 * mean correct`` (accuracy at IoU 0.5, the standard REC number).
Default ``iou_type="iou"`` is plain IoU as in InstanceVG (``instancevg/apis/test.py: accuracy``, mmdet
``bbox_overlaps``) and SeqTR/TransVG; ``iou_type="giou"`` reproduces MDETR's ``RefExpEvaluator``
(Precision@1, which thresholds the *generalized* IoU). An expression without any predicted box is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..boxes import box_iou, generalized_box_iou
from .grec import as_boxes, as_scores, prediction_boxes_and_scores
from .record_columns import as_columns, finite_column, format_resolution, ratio

REC_DEFINITIONS = {
    "iou": "REC Precision@0.5, top-1 box IoU (InstanceVG instancevg/apis/test.py accuracy)",
    "giou": "REC Precision@1, top-1 box GIoU (MDETR mdetr/datasets/refexp.py RefExpEvaluator)",
}


@dataclass(frozen=True)
class RECRecord:
    """Overlap of the top-scoring predicted box with the GT box (``-1`` when nothing was predicted)."""

    iou: float


def rec_record(
    pred_boxes: Any,
    pred_scores: Any | None,
    gt_box: Any,
    *,
    iou_type: Literal["iou", "giou"] = "iou",
    box_format: str = "xyxy",
) -> RECRecord:
    """The ``RECRecord`` of one expression. ``pred_scores=None`` means the first box is the answer."""
    if iou_type not in REC_DEFINITIONS:
        raise ValueError(f"iou_type must be 'iou' or 'giou', got {iou_type!r}")
    pred = as_boxes(pred_boxes, "pred_boxes", box_format)
    gt = as_boxes(gt_box, "gt_box", box_format)
    if len(gt) != 1:
        raise ValueError(f"REC needs exactly one ground-truth box, got {len(gt)}")
    if len(pred) == 0:
        return RECRecord(iou=-1.0)
    if pred_scores is None:
        top = 0
    else:
        scores = as_scores(pred_scores)
        if len(scores) != len(pred):
            raise ValueError(f"got {len(pred)} predicted boxes but {len(scores)} scores")
        top = int(np.argmax(scores))
    box = pred[top : top + 1]
    value = box_iou(box, gt)[0] if iou_type == "iou" else generalized_box_iou(box, gt)
    return RECRecord(iou=float(torch.nan_to_num(value, nan=0.0)[0, 0]))


def rec_record_from_prediction(prediction: Mapping[str, Any], gt_box: Any, **kwargs: Any) -> RECRecord:
    """``rec_record`` of a post-processed prediction dict (its ``instances``' ``box`` and ``score``)."""
    boxes, scores = prediction_boxes_and_scores(prediction)
    return rec_record(boxes, scores, gt_box, **kwargs)


def rec_metrics(
    records: Any,
    *,
    resolution: str | int | Sequence[int],
    iou_threshold: float = 0.5,
    iou_type: Literal["iou", "giou"] = "iou",
) -> dict[str, float | int | str]:
    """``Precision@0.5`` (in %) of ``RECRecord`` s; ``iou_type`` names how the records were built."""
    if iou_type not in REC_DEFINITIONS:
        raise ValueError(f"iou_type must be 'iou' or 'giou', got {iou_type!r}")
    resolution = format_resolution(resolution)
    iou = finite_column(as_columns(records, ("iou",))["iou"], "iou", "REC record")
    return {
        f"Precision@{iou_threshold:g}": ratio(int(np.sum(iou >= iou_threshold)), len(iou)),
        "num_samples": len(iou),
        "definition": REC_DEFINITIONS[iou_type],
        "resolution": resolution,
    }
