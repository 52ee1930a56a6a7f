"""Classic RES metrics (RefCOCO / RefCOCO+ / RefCOCOg): mIoU, oIoU, P@{0.5,...,0.9}, as LAVT's evaluator.

Source: ``yz93/LAVT-RIS: test.py: evaluate`` (the protocol DMMI, RefSegformer and most RES papers copy).
Per sentence ``IoU = I / U`` (0 when ``U == 0``); ``mIoU = 100 * mean IoU``, ``oIoU = 100 * sum I / sum U``
(ReLA calls these gIoU / cIoU on RefCOCO), ``P@t`` = % of sentences with ``IoU >= t``.
Every record counts (no-target flags are ignored: RefCOCO has no empty targets). Guard: oIoU is 0
when ``sum U == 0`` (LAVT would divide by zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .mask_records import mask_columns
from .record_columns import format_resolution, ratio

RES_DEFINITION = "LAVT refcoco evaluator (yz93/LAVT-RIS test.py evaluate)"
RES_PR_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def iou_per_sample(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """``I / U`` per sample, 0 where ``U == 0`` (LAVT ``this_iou``)."""
    i = np.asarray(intersection, dtype=np.float64)
    u = np.asarray(union, dtype=np.float64)
    return np.where(u > 0, i / np.where(u > 0, u, 1.0), 0.0)


def overlap_metrics(
    intersection: np.ndarray, union: np.ndarray, pr_thresholds: Sequence[float]
) -> dict[str, float]:
    """``mIoU``, ``oIoU`` and ``P@t`` (in %) of per-sample counts; all 0 over zero samples."""
    iou = iou_per_sample(intersection, union)
    out = {
        "mIoU": ratio(iou.sum(), len(iou)),
        "oIoU": ratio(np.sum(intersection), np.sum(union)),
    }
    for t in pr_thresholds:
        out[f"P@{t:g}"] = ratio(int(np.sum(iou >= t)), len(iou))
    return out


def res_metrics(
    records: Any,
    *,
    resolution: str | int | Sequence[int],
    pr_thresholds: Sequence[float] = RES_PR_THRESHOLDS,
) -> dict[str, float | int | str]:
    """mIoU, oIoU and P@t (in %) of RES ``MaskRecord`` s (see the module docstring)."""
    resolution = format_resolution(resolution)
    cols = mask_columns(records)
    result: dict[str, float | int | str] = dict(
        overlap_metrics(cols["intersection"], cols["union"], pr_thresholds)
    )
    result.update({"num_samples": len(cols["union"]), "definition": RES_DEFINITION, "resolution": resolution})
    return result
