"""GREC metrics (gRefCOCO boxes): Pr@(F1=1, IoU>=0.5), N-acc and T-acc, as the official evaluator.

Source: ``henghuiding/gRefCOCO: mdetr/datasets/refexp.py: RefExpEvaluator.summarize`` (definitions in
``docs/metrics.md``). Per expression:

1. keep the predicted boxes with ``score >= 0.7`` (sorted by score, descending);
2. no-target GT: ``TP`` (N-acc) and ``F1 = 1`` if no box is kept, else ``FN`` and ``F1 = 0``;
3. target GT: ``TN`` (T-acc) if at least one box is kept, else ``FP``. Greedy one-to-one matching on the
   **generalized** IoU matrix (kept x GT, ``xyxy`` pixels): repeatedly take the global maximum; stop when it
   is ``< 0.5``, otherwise count a match and zero its row and column (at most ``min(#kept, #GT)`` rounds).
   ``F1 = 2 TP / (2 TP + FP + FN)`` with ``FP = #kept - TP``, ``FN = #GT - TP``;
4. the expression is correct iff ``F1 >= 1``.

``Pr@(F1=1, IoU>=0.5) = 100 * correct / #expressions``, ``N-acc = 100 * TP / (TP + FN)``,
``T-acc = 100 * TN / (TN + FP)`` (the official code returns fractions; guards: 0 over an empty group,
as InstanceVG's copy). Ties in the GIoU matrix go to the first maximum in row-major order, rows
ordered by descending score then descending box (``sorted(zip(scores, boxes), reverse=True)``);
the official ``torch.topk`` leaves tie order unspecified. An expression without any predicted box is
handled (the official code crashes on it), and GIoU ``nan`` (two zero-area boxes) never matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..boxes import box_xywh_to_xyxy, generalized_box_iou
from .record_columns import as_columns, count_column, finite_column, flag_column, format_resolution, ratio

GREC_DEFINITION = "gRefCOCO GREC evaluator (henghuiding/gRefCOCO mdetr/datasets/refexp.py RefExpEvaluator)"
GREC_SCORE_THRESHOLD = 0.7
GREC_IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class GRECRecord:
    """Outcome of one expression: kept boxes, GT boxes, greedy GIoU matches, and the thresholds used."""

    num_pred: int
    num_gt: int
    num_matched: int
    gt_no_target: bool
    score_threshold: float = GREC_SCORE_THRESHOLD
    iou_threshold: float = GREC_IOU_THRESHOLD


GREC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GRECRecord))


def as_boxes(boxes: Any, name: str, box_format: str = "xyxy") -> torch.Tensor:
    """``(N, 4)`` float64 ``xyxy`` tensor from a list / array / tensor (``N`` may be 0)."""
    if box_format not in ("xyxy", "xywh"):
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    if isinstance(boxes, torch.Tensor):
        t = boxes.detach().to("cpu", torch.float64)
    else:
        t = torch.as_tensor(np.asarray(boxes if boxes is not None else [], dtype=np.float64))
    if t.numel() == 0:
        return t.reshape(0, 4)
    if t.ndim == 1 and t.shape[0] == 4:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        row = int(torch.nonzero(~torch.isfinite(t).all(1))[0, 0])
        raise ValueError(f"{name} must hold finite coordinates, got {t[row].tolist()} at index {row}")
    return box_xywh_to_xyxy(t) if box_format == "xywh" else t


def as_scores(scores: Any, name: str = "pred_scores") -> np.ndarray:
    """``scores`` as a 1-D float64 array; ``ValueError`` naming ``name`` and the index of a NaN or infinite
    score (a NaN would win ``argmax`` in REC and silently drop a box in GREC)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().to("cpu", torch.float64).numpy()
    try:
        out = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be real numbers, got {type(scores).__name__}") from None
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {out[bad[0]]} at index {int(bad[0])}")
    return out


def greedy_giou_matches(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float) -> int:
    """Number of greedy one-to-one matches with generalized IoU ``>= iou_threshold`` (official step 3)."""
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return 0
    giou = np.nan_to_num(generalized_box_iou(pred_boxes, gt_boxes).numpy(), nan=-np.inf)
    matched = 0
    for _ in range(min(giou.shape)):
        flat = int(np.argmax(giou))
        if not giou.flat[flat] >= iou_threshold:
            break
        row, col = divmod(flat, giou.shape[1])
        matched += 1
        giou[row, :] = 0.0
        giou[:, col] = 0.0
    return matched


def grec_record(
    pred_boxes: Any,
    pred_scores: Any,
    gt_boxes: Any,
    *,
    gt_no_target: bool | None = None,
    score_threshold: float = GREC_SCORE_THRESHOLD,
    iou_threshold: float = GREC_IOU_THRESHOLD,
    box_format: str = "xyxy",
) -> GRECRecord:
    """The ``GRECRecord`` of one expression from predicted boxes + scores and GT boxes (same pixel frame).

    ``gt_no_target`` defaults to "no GT box"; GT boxes of a no-target expression are ignored.
    ``box_format`` applies to both box sets (``"xywh"`` for COCO-style dataset rows).
    """
    pred = as_boxes(pred_boxes, "pred_boxes", box_format)
    scores = as_scores(pred_scores)
    if len(scores) != len(pred):
        raise ValueError(f"got {len(pred)} predicted boxes but {len(scores)} scores")
    gt = as_boxes(gt_boxes, "gt_boxes", box_format)
    if gt_no_target is None:
        gt_no_target = len(gt) == 0
    if not gt_no_target and len(gt) == 0:
        raise ValueError("a target expression (gt_no_target=False) needs at least one ground-truth box")
    order = sorted(zip(scores.tolist(), pred.tolist()), reverse=True)
    kept = [box for score, box in order if score >= score_threshold]
    kept_boxes = torch.tensor(kept, dtype=torch.float64).reshape(-1, 4)
    matched = 0 if gt_no_target else greedy_giou_matches(kept_boxes, gt, iou_threshold)
    return GRECRecord(
        num_pred=len(kept),
        num_gt=0 if gt_no_target else len(gt),
        num_matched=matched,
        gt_no_target=bool(gt_no_target),
        score_threshold=float(score_threshold),
        iou_threshold=float(iou_threshold),
    )


def prediction_boxes_and_scores(prediction: Mapping[str, Any]) -> tuple[torch.Tensor, list[float]]:
    """``(boxes (K, 4) float64 xyxy, scores)`` of the ``instances`` of a post-processed prediction dict."""
    if "instances" not in prediction:
        raise ValueError(f"prediction dict has no 'instances' key (keys: {sorted(prediction)})")
    instances = prediction["instances"]
    boxes = [torch.as_tensor(inst["box"], dtype=torch.float64).reshape(4) for inst in instances]
    scores = [float(inst["score"]) for inst in instances]
    return (torch.stack(boxes) if boxes else torch.zeros(0, 4, dtype=torch.float64)), scores


def grec_record_from_prediction(prediction: Mapping[str, Any], gt_boxes: Any, **kwargs: Any) -> GRECRecord:
    """``grec_record`` of a post-processed prediction dict (its ``instances``' ``box`` and ``score``)."""
    boxes, scores = prediction_boxes_and_scores(prediction)
    return grec_record(boxes, scores, gt_boxes, **kwargs)


def grec_metrics(records: Any, *, resolution: str | int | Sequence[int]) -> dict[str, float | int | str]:
    """Pr@(F1=1, IoU>=0.5), N-acc and T-acc (in %) of ``GRECRecord`` s (see the module docstring)."""
    resolution = format_resolution(resolution)
    cols = as_columns(
        records,
        GREC_FIELDS,
        {"score_threshold": GREC_SCORE_THRESHOLD, "iou_threshold": GREC_IOU_THRESHOLD},
    )
    p, g, m = (count_column(cols[k], k, "GREC record") for k in ("num_pred", "num_gt", "num_matched"))
    nt = flag_column(cols["gt_no_target"], "gt_no_target", "GREC record")
    for name in ("score_threshold", "iou_threshold"):
        cols[name] = finite_column(cols[name], name, "GREC record")
    if np.any((m < 0) | (m > np.minimum(p, g))):
        k = int(np.flatnonzero((m < 0) | (m > np.minimum(p, g)))[0])
        raise ValueError(
            f"GREC record {k}: num_matched={m[k]} must be in [0, min(num_pred={p[k]}, num_gt={g[k]})]"
        )
    if np.any(~nt & (g == 0)):
        k = int(np.flatnonzero(~nt & (g == 0))[0])
        raise ValueError(f"GREC record {k} is a target expression without ground-truth boxes")
    thresholds = {(float(s), float(t)) for s, t in zip(cols["score_threshold"], cols["iou_threshold"])}
    if len(thresholds) != 1:
        raise ValueError(
            f"GREC records were built with different thresholds (score, iou): {sorted(thresholds)}"
        )
    score_thr, iou_thr = thresholds.pop()
    f1 = np.where(nt, (p == 0).astype(np.float64), 2 * m / np.maximum(p + g, 1))
    correct = f1 >= 1.0
    tp, fn = int(np.sum(nt & (p == 0))), int(np.sum(nt & (p > 0)))
    tn, fp = int(np.sum(~nt & (p > 0))), int(np.sum(~nt & (p == 0)))
    return {
        f"Pr@(F1=1, IoU>={iou_thr:g})": ratio(int(correct.sum()), len(nt)),
        "N-acc": ratio(tp, tp + fn),
        "T-acc": ratio(tn, tn + fp),
        "num_samples": len(nt),
        "num_no_target": tp + fn,
        "score_threshold": score_thr,
        "iou_threshold": iou_thr,
        "definition": GREC_DEFINITION,
        "resolution": resolution,
    }
