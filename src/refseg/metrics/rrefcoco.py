"""R-RefCOCO / R-RefCOCO+ / R-RefCOCOg metrics: mIoU, oIoU, mRR and rIoU, grouped by ref.

Source: ``jianzongwu/robust-ref-seg: utils/validation.py: validate`` (RefSegformer, batch size 1;
see ``docs/metrics.md``). The unit is one ref (object) with its positive sentences
(``exist = 1``, ``gt_no_target = False``) and negative sentences (``exist = 0``, ``gt_no_target = True``):

* with ``gate_with_no_target`` (the official ``--use_exist``), a sentence whose predicted no-target flag is
  set has its mask zeroed: a positive then counts ``I = 0, U = |G|``, a negative ``|P| = 0``;
* positives: ``I_ref = sum_s I_s``, ``U_ref = sum_s U_s``, ``IoU_ref = mean_s I_s / U_s``;
* negatives: FP if the (gated) predicted mask has any foreground pixel, else TN;
  ``r_ref = TN / (TN + FP)``; every FP adds its predicted area to the union: ``U'_ref = U_ref + sum_FP |P|``;
  ``rIoU_ref = I_ref / U'_ref``;
* ``mIoU = 100 * mean_ref IoU_ref``, ``oIoU = 100 * sum_ref I_ref / sum_ref U_ref`` (positives only),
  ``mRR = 100 * mean_ref r_ref``, ``rIoU = 100 * mean_ref rIoU_ref``.

The official code measures negatives' ``|P|`` at the model's output resolution (not upsampled) while
positives are upsampled to the original image: pass negatives' masks at that resolution to reproduce it.
``no_target_rule="flag"`` follows InstanceVG's copy: a negative is FP iff the no-target flag is unset.
Departures where the official code yields ``nan``: a ref without negative sentences is left out of the
mRR mean (counted in ``num_refs_without_negatives``), and ``I / U`` with ``U = 0`` is 0. A ref without
positive sentences is not a ref: ``ValueError``. The official ``P@X`` log line uses a running IoU sum (a
bug) and is not part of its returned results, so it is not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .mask_records import mask_columns
from .record_columns import format_resolution, ratio
from .res import iou_per_sample

RREFCOCO_DEFINITIONS = {
    "empty_mask": "RefSegformer R-RefCOCO evaluator (jianzongwu/robust-ref-seg utils/validation.py validate)",
    "flag": "InstanceVG R-RefCOCO evaluator (Dmmm1997/InstanceVG instancevg/evaluations/rrefcoco.py)",
}


def rrefcoco_ref_scores(
    records: Any,
    *,
    gate_with_no_target: bool = True,
    no_target_rule: Literal["empty_mask", "flag"] = "empty_mask",
) -> dict[str, np.ndarray]:
    """Per-ref arrays ``ref_id, I, U, U_prime, iou, r, has_negatives, riou`` (see the module docstring)."""
    if no_target_rule not in RREFCOCO_DEFINITIONS:
        raise ValueError(
            f"no_target_rule must be one of {sorted(RREFCOCO_DEFINITIONS)}, got {no_target_rule!r}"
        )
    cols = mask_columns(records)
    if np.any(cols["ref_id"] < 0):
        k = int(np.flatnonzero(cols["ref_id"] < 0)[0])
        raise ValueError(
            f"R-RefCOCO records need a ref_id >= 0 to group sentences by ref; record {k} has none"
        )
    ref_ids, group = np.unique(cols["ref_id"], return_inverse=True)
    n_refs = len(ref_ids)
    positive = ~cols["gt_no_target"]
    gated = cols["pred_no_target"] if gate_with_no_target else np.zeros_like(positive)

    # positive sentences
    i = np.where(gated, 0, cols["intersection"]).astype(np.float64)
    u = np.where(gated, cols["gt_area"], cols["union"]).astype(np.float64)
    pos_count = np.bincount(group[positive], minlength=n_refs)
    if np.any(pos_count == 0):
        missing = ref_ids[pos_count == 0][:5].tolist()
        raise ValueError(f"R-RefCOCO refs need at least one positive sentence; refs {missing} have none")
    ref_i = np.bincount(group[positive], weights=i[positive], minlength=n_refs)
    ref_u = np.bincount(group[positive], weights=u[positive], minlength=n_refs)
    ref_iou = (
        np.bincount(group[positive], weights=iou_per_sample(i, u)[positive], minlength=n_refs) / pos_count
    )

    # negative sentences
    negative = ~positive
    pred_area = np.where(gated, 0, cols["pred_area"])
    if no_target_rule == "empty_mask":
        false_pos = negative & (pred_area > 0)
    else:
        false_pos = negative & ~cols["pred_no_target"]
    neg_count = np.bincount(group[negative], minlength=n_refs)
    fp_count = np.bincount(group[false_pos], minlength=n_refs)
    fp_area = np.bincount(group[false_pos], weights=pred_area[false_pos].astype(np.float64), minlength=n_refs)
    has_neg = neg_count > 0
    r = np.where(has_neg, (neg_count - fp_count) / np.where(has_neg, neg_count, 1), 0.0)
    ref_u_prime = ref_u + fp_area
    return {
        "ref_id": ref_ids,
        "I": ref_i,
        "U": ref_u,
        "U_prime": ref_u_prime,
        "iou": ref_iou,
        "r": r,
        "has_negatives": has_neg,
        "riou": iou_per_sample(ref_i, ref_u_prime),
    }


def rrefcoco_metrics(
    records: Any,
    *,
    resolution: str | int | Sequence[int],
    gate_with_no_target: bool = True,
    no_target_rule: Literal["empty_mask", "flag"] = "empty_mask",
) -> dict[str, float | int | str]:
    """mIoU, oIoU, mRR and rIoU (in %) of R-RefCOCO ``MaskRecord`` s with ``ref_id`` (module docstring)."""
    resolution = format_resolution(resolution)
    refs = rrefcoco_ref_scores(
        records, gate_with_no_target=gate_with_no_target, no_target_rule=no_target_rule
    )
    n_refs = len(refs["ref_id"])
    has_neg = refs["has_negatives"]
    return {
        "mIoU": ratio(refs["iou"].sum(), n_refs),
        "oIoU": ratio(refs["I"].sum(), refs["U"].sum()),
        "mRR": ratio(refs["r"][has_neg].sum(), int(has_neg.sum())),
        "rIoU": ratio(refs["riou"].sum(), n_refs),
        "num_refs": n_refs,
        "num_refs_without_negatives": int((~has_neg).sum()),
        "definition": RREFCOCO_DEFINITIONS[no_target_rule],
        "resolution": resolution,
    }
