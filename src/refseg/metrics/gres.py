"""GRES metrics (gRefCOCO): gIoU, cIoU, N-acc, T-acc, Pr@{0.7,0.8,0.9}, exactly as ReLA's evaluator.

Source: ``henghuiding/ReLA: gres_model/evaluation/refer_evaluation.py`` (``ReferEvaluator.evaluate``,
after commit ``884ef17`` "fix eval metrics"; see ``docs/metrics.md``). Per sample, with
``I = |P n G|`` and ``U = |P u G|``:

=================================  =======  ==============  ======  ====================================
case                               counter  IoU_i           sum I   sum U
=================================  =======  ==============  ======  ====================================
GT no-target, predicted no-target  TP       1               0       0 (even if P has pixels)
GT no-target, predicted target     FN       0               0       ``U`` (= ``|P|``, G is empty)
GT target, predicted no-target     FP       0 (I := 0)      0       ``|P u G|`` (P is **not** zeroed)
GT target, predicted target        TN       I/U (0 if U=0)  I       U
=================================  =======  ==============  ======  ====================================

``gIoU = 100 * mean_i IoU_i`` over all samples, ``cIoU = 100 * sum I / sum U``,
``N-acc = 100 * TP / (TP + FN)``, ``T-acc = 100 * TN / (TN + FP)``, ``Pr@t`` = % of target samples
with ``IoU_i >= t``.

Quirks kept from ReLA: N-acc and T-acc are both 0 when no sample is a no-target one (``empty_count
== 0``). ReLA prints N-acc/T-acc as fractions; here they are percentages like every other number (the
papers and InstanceVG report percentages). Guards where ReLA would divide by zero: cIoU is 0 when
``sum U == 0``, T-acc is 0 without target samples, Pr@t is 0 without target samples.
The no-target flag comes from the model's own head (there is no pixel-count rule in ReLA or InstanceVG).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .mask_records import mask_columns
from .record_columns import format_resolution, ratio

GRES_DEFINITION = "ReLA gres evaluator (henghuiding/ReLA gres_model/evaluation/refer_evaluation.py)"
GRES_PR_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9)


def gres_sample_scores(records: Any) -> dict[str, np.ndarray]:
    """Per-sample ``iou`` and the sums each sample adds (``intersection``, ``union``) under the ReLA table."""
    cols = mask_columns(records)
    gt_nt, pred_nt = cols["gt_no_target"], cols["pred_no_target"]
    i = cols["intersection"].astype(np.float64)
    u = cols["union"].astype(np.float64)
    i = np.where(gt_nt | pred_nt, 0.0, i)  # TP/FN: I = 0; FP: I forced to 0
    u = np.where(gt_nt & pred_nt, 0.0, u)  # TP adds nothing; FN adds |P| (= U); FP keeps |P u G|
    iou = np.where(u > 0, i / np.where(u > 0, u, 1.0), 0.0)
    iou = np.where(gt_nt & pred_nt, 1.0, iou)
    return {"iou": iou, "intersection": i, "union": u}


def gres_metrics(
    records: Any,
    *,
    resolution: str | int | Sequence[int],
    pr_thresholds: Sequence[float] = GRES_PR_THRESHOLDS,
) -> dict[str, float | int | str]:
    """gIoU, cIoU, N-acc, T-acc and Pr@t (all in %) of GRES ``MaskRecord`` s (see the module docstring).

    ``resolution`` is where the masks were counted: ``"original"`` or e.g. ``"480x480"`` (ReLA's protocol).
    """
    resolution = format_resolution(resolution)
    cols = mask_columns(records)
    scores = gres_sample_scores(cols)
    gt_nt, pred_nt = cols["gt_no_target"], cols["pred_no_target"]
    tp = int(np.sum(gt_nt & pred_nt))
    fn = int(np.sum(gt_nt & ~pred_nt))
    fp = int(np.sum(~gt_nt & pred_nt))
    tn = int(np.sum(~gt_nt & ~pred_nt))
    num_no_target = tp + fn
    num_target = fp + tn
    result: dict[str, float | int | str] = {
        "gIoU": ratio(scores["iou"].sum(), len(gt_nt)),
        "cIoU": ratio(scores["intersection"].sum(), scores["union"].sum()),
        "N-acc": ratio(tp, tp + fn) if num_no_target else 0.0,
        "T-acc": ratio(tn, tn + fp) if num_no_target else 0.0,
    }
    target_iou = scores["iou"][~gt_nt]
    for t in pr_thresholds:
        result[f"Pr@{t:g}"] = ratio(int(np.sum(target_iou >= t)), num_target)
    result.update(
        {
            "num_samples": len(gt_nt),
            "num_no_target": num_no_target,
            "TP": tp,
            "FN": fn,
            "FP": fp,
            "TN": tn,
            "definition": GRES_DEFINITION,
            "resolution": resolution,
        }
    )
    return result
