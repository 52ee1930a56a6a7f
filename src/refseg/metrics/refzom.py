"""Ref-ZOM metrics: oIoU, mIoU, P@{0.5,...,0.9} over targeted sentences and Acc over zero-target ones.

Source: ``toggle1995/RIS-DMMI: test.py: evaluate`` (see ``docs/metrics.md``). Per sentence:

* zero-target (``source == "zero"``, i.e. ``gt_no_target``): ``acc = 1`` iff the predicted mask has **no**
  foreground pixel; ``Acc = 100 * mean acc``. These sentences never enter mIoU / oIoU / P@t.
* otherwise ``IoU = I / U`` (0 if ``U == 0``); ``mIoU = 100 * mean IoU``, ``oIoU = 100 * sum I / sum U``.

``no_target_rule="flag"`` reproduces InstanceVG's copy (``instancevg/evaluations/refzom.py``), where a
zero-target sentence is correct iff the model's no-target flag is set instead. The predicted flag is
otherwise ignored (DMMI has no no-target head), so a targeted sentence is scored on its mask as given.
Guards: a metric over an empty group is 0 (DMMI gives ``nan`` / divides by zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .mask_records import mask_columns
from .record_columns import format_resolution, ratio
from .res import RES_PR_THRESHOLDS, overlap_metrics

REFZOM_DEFINITIONS = {
    "empty_mask": "DMMI Ref-ZOM evaluator (toggle1995/RIS-DMMI test.py evaluate)",
    "flag": "InstanceVG Ref-ZOM evaluator (Dmmm1997/InstanceVG instancevg/evaluations/refzom.py)",
}


def refzom_metrics(
    records: Any,
    *,
    resolution: str | int | Sequence[int],
    no_target_rule: Literal["empty_mask", "flag"] = "empty_mask",
    pr_thresholds: Sequence[float] = RES_PR_THRESHOLDS,
) -> dict[str, float | int | str]:
    """oIoU, mIoU, P@t and Acc (in %) of Ref-ZOM ``MaskRecord`` s (see the module docstring)."""
    if no_target_rule not in REFZOM_DEFINITIONS:
        raise ValueError(
            f"no_target_rule must be one of {sorted(REFZOM_DEFINITIONS)}, got {no_target_rule!r}"
        )
    resolution = format_resolution(resolution)
    cols = mask_columns(records)
    zero = cols["gt_no_target"]
    if no_target_rule == "empty_mask":
        correct = cols["pred_area"][zero] == 0
    else:
        correct = cols["pred_no_target"][zero]
    result: dict[str, float | int | str] = dict(
        overlap_metrics(cols["intersection"][~zero], cols["union"][~zero], pr_thresholds)
    )
    result["Acc"] = ratio(int(np.sum(correct)), int(zero.sum()))
    result.update(
        {
            "num_samples": len(zero),
            "num_no_target": int(zero.sum()),
            "definition": REFZOM_DEFINITIONS[no_target_rule],
            "resolution": resolution,
        }
    )
    return result
