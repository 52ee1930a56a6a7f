"""``MaskRecord``: the per-sample pixel counts every mask metric consumes, counted from predicted and ground-truth masks.

``I = |P n G|`` and ``U = |P u G|`` as in every official evaluator (``np.logical_and`` /
``np.logical_or`` sums). Masks are numpy arrays, torch tensors or PIL images and must be binary: bool,
integers that are all 0/1 or all 0/255 (the pipeline's PIL masks), or floats that are exactly 0.0/1.0.
Anything else (probabilities, logits, NaN, label maps) is refused naming the argument: threshold first
(e.g. ``probs > 0.5``); a metric never guesses a threshold. Torch tensors are counted on their own device.
Both masks must already be at the evaluation resolution: nothing is resized here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .record_columns import as_columns, count_column, flag_column

BINARY_RULE = "bool, integers all 0/1 or all 0/255, or floats exactly 0.0/1.0"


@dataclass(frozen=True)
class MaskRecord:
    """Pixel counts and no-target flags of one (sentence, image) pair.

    ``intersection = |P n G|``, ``union = |P u G|``, ``pred_area = |P|``, ``gt_area = |G|`` for the predicted
    mask ``P`` and the merged ground-truth mask ``G`` at the evaluation resolution.
    ``pred_no_target``: the model says nothing is referred to. ``gt_no_target``: the annotation says so
    (gRefCOCO ``empty``, Ref-ZOM ``source == "zero"``, R-RefCOCO ``exist == 0``).
    ``ref_id`` groups the sentences of one object (R-RefCOCO); ``-1`` when unused.
    """

    intersection: int
    union: int
    pred_area: int
    gt_area: int
    pred_no_target: bool = False
    gt_no_target: bool = False
    ref_id: int = -1


MASK_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MaskRecord))
_MASK_DEFAULTS: dict[str, Any] = {"pred_no_target": False, "gt_no_target": False, "ref_id": -1}


def mask_columns(records: Any) -> dict[str, np.ndarray]:
    """Validated columns of ``MaskRecord`` data: int64 counts, bool flags, int64 ref ids (``count_column``,
    ``flag_column``: NaN, fractions and non-numbers are refused naming the field and record)."""
    cols = as_columns(records, MASK_FIELDS, _MASK_DEFAULTS)
    for name in ("intersection", "union", "pred_area", "gt_area", "ref_id"):
        cols[name] = count_column(cols[name], name, "mask record")
    for name in ("pred_no_target", "gt_no_target"):
        cols[name] = flag_column(cols[name], name, "mask record")
    i, u, p, g = cols["intersection"], cols["union"], cols["pred_area"], cols["gt_area"]
    bad = np.flatnonzero((i < 0) | (p < 0) | (g < 0) | (i > np.minimum(p, g)) | (u != p + g - i))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"inconsistent mask record {k}: intersection={i[k]}, union={u[k]}, pred_area={p[k]}, gt_area={g[k]} "
            "(need 0 <= intersection <= min(pred_area, gt_area) and union = pred_area + gt_area - intersection; "
            "were the prediction and the ground truth counted at the same resolution?)"
        )
    return cols


def _binary_error(name: str, dtype: Any, has_nan: bool, low: float, high: float) -> ValueError:
    found = "NaN" if has_nan else f"values in [{low:g}, {high:g}]"
    return ValueError(
        f"{name} must be a binary mask ({BINARY_RULE}), got {dtype} with {found}; threshold probabilities "
        f"or logits first (e.g. {name} > 0.5)"
    )


def _as_bool(mask: Any, name: str) -> np.ndarray | torch.Tensor:
    """``mask`` as a bool array/tensor, after checking that it is binary (module docstring)."""
    if isinstance(mask, torch.Tensor):
        if mask.dtype == torch.bool:
            return mask
        if mask.is_complex():
            raise ValueError(
                f"{name} must be a binary mask ({BINARY_RULE}), got a tensor of dtype {mask.dtype}"
            )
        if not mask.numel():
            return mask != 0
        zero = mask == 0
        ok = bool((zero | (mask == 1)).all())
        if not ok and not mask.is_floating_point():
            ok = bool((zero | (mask == 255)).all())
        if not ok:
            values = mask.detach().double()
            finite = values[torch.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)
            raise _binary_error(name, mask.dtype, bool(values.isnan().any()), low, high)
        return ~zero
    if hasattr(mask, "convert") and hasattr(mask, "size"):  # PIL image
        mask = np.asarray(mask)
    if isinstance(mask, np.ndarray | list | tuple):
        arr = np.asarray(mask)
        if arr.dtype == bool:
            return arr
        if arr.dtype.kind not in "iuf":
            raise ValueError(
                f"{name} must be a binary mask ({BINARY_RULE}), got an array of dtype {arr.dtype}"
            )
        if not arr.size:
            return arr != 0
        zero = arr == 0
        ok = bool((zero | (arr == 1)).all())
        if not ok and arr.dtype.kind in "iu":
            ok = bool((zero | (arr == 255)).all())
        if not ok:
            values = arr.astype(np.float64)
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            raise _binary_error(name, arr.dtype, bool(np.isnan(values).any()), low, high)
        return ~zero
    raise ValueError(
        f"{name} must be a numpy array, a torch tensor or a PIL image, got {type(mask).__name__}"
    )


def _pair(pred_mask: Any, gt_mask: Any, ndim: int) -> tuple[Any, Any]:
    plural = "s" if ndim == 3 else ""
    pred, gt = _as_bool(pred_mask, f"pred_mask{plural}"), _as_bool(gt_mask, f"gt_mask{plural}")
    if isinstance(pred, torch.Tensor) != isinstance(gt, torch.Tensor):
        pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else pred
        gt = gt.cpu().numpy() if isinstance(gt, torch.Tensor) else gt
    elif isinstance(pred, torch.Tensor) and pred.device != gt.device:
        gt = gt.to(pred.device)
    if pred.ndim != ndim or tuple(pred.shape) != tuple(gt.shape):
        layout = "(H, W)" if ndim == 2 else "(B, H, W)"
        raise ValueError(
            f"pred_mask and gt_mask must both be {layout} with the same shape (resize to the evaluation "
            f"resolution first), got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    return pred, gt


def batch_mask_counts(pred_masks: Any, gt_masks: Any) -> np.ndarray:
    """Counts of a batch of ``(B, H, W)`` masks: int64 array ``(B, 4)`` of ``[I, U, |P|, |G|]``."""
    pred, gt = _pair(pred_masks, gt_masks, ndim=3)
    if isinstance(pred, torch.Tensor):
        dims = (-2, -1)
        stacked = torch.stack(
            [(pred & gt).sum(dims), (pred | gt).sum(dims), pred.sum(dims), gt.sum(dims)], dim=1
        )
        return stacked.cpu().numpy().astype(np.int64)
    dims = (-2, -1)
    return np.stack(
        [(pred & gt).sum(dims), (pred | gt).sum(dims), pred.sum(dims), gt.sum(dims)], axis=1
    ).astype(np.int64)


def mask_counts(pred_mask: Any, gt_mask: Any) -> tuple[int, int, int, int]:
    """``(I, U, |P|, |G|)`` of one ``(H, W)`` predicted mask and ground-truth mask."""
    pred, gt = _pair(pred_mask, gt_mask, ndim=2)
    counts = batch_mask_counts(pred[None], gt[None])[0]
    return int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3])


def segmentation_record(
    prediction: Mapping[str, Any] | Any,
    gt_mask: Any,
    *,
    gt_no_target: bool | None = None,
    pred_no_target: bool | None = None,
    ref_id: int = -1,
) -> MaskRecord:
    """The ``MaskRecord`` of one sample.

    ``prediction`` is a post-processed prediction dict of the DESIGN contract (``{"mask", "no_target",
    ...}``; its ``mask`` is used as given, and ``no_target`` is the predicted flag) or a bare ``(H, W)``
    mask (then ``pred_no_target`` defaults to ``False``). ``gt_no_target`` defaults to "the ground-truth
    mask is empty"; pass the dataset's flag (``no_target`` column) where it exists.
    """
    if isinstance(prediction, Mapping):
        if "mask" not in prediction:
            raise ValueError(f"prediction dict has no 'mask' key (keys: {sorted(prediction)})")
        mask = prediction["mask"]
        if pred_no_target is None:
            pred_no_target = bool(prediction.get("no_target", False))
    else:
        mask = prediction
    i, u, p, g = mask_counts(mask, gt_mask)
    return MaskRecord(
        intersection=i,
        union=u,
        pred_area=p,
        gt_area=g,
        pred_no_target=bool(pred_no_target) if pred_no_target is not None else False,
        gt_no_target=bool(gt_no_target) if gt_no_target is not None else g == 0,
        ref_id=int(ref_id),
    )


def segmentation_records(
    predictions: Sequence[Mapping[str, Any]] | Any,
    gt_masks: Sequence[Any] | Any,
    *,
    gt_no_target: Sequence[bool] | None = None,
    pred_no_target: Sequence[bool] | None = None,
    ref_ids: Sequence[int] | None = None,
) -> list[MaskRecord]:
    """``MaskRecord`` s of a batch: a list of prediction dicts (or masks) and a list (or ``(B, H, W)``) of GT masks.

    A ``(B, H, W)`` tensor/array of predicted masks with a ``(B, H, W)`` GT batch is counted in one
    vectorized pass.
    """
    n = len(predictions)
    if len(gt_masks) != n:
        raise ValueError(f"got {n} predictions but {len(gt_masks)} ground-truth masks")
    for name, seq in (
        ("gt_no_target", gt_no_target),
        ("pred_no_target", pred_no_target),
        ("ref_ids", ref_ids),
    ):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} predictions")
    is_stacked = isinstance(predictions, np.ndarray | torch.Tensor) and isinstance(
        gt_masks, np.ndarray | torch.Tensor
    )
    if is_stacked:
        counts = batch_mask_counts(predictions, gt_masks)
        return [
            MaskRecord(
                intersection=int(c[0]),
                union=int(c[1]),
                pred_area=int(c[2]),
                gt_area=int(c[3]),
                pred_no_target=bool(pred_no_target[k]) if pred_no_target is not None else False,
                gt_no_target=bool(gt_no_target[k]) if gt_no_target is not None else int(c[3]) == 0,
                ref_id=int(ref_ids[k]) if ref_ids is not None else -1,
            )
            for k, c in enumerate(counts)
        ]
    return [
        segmentation_record(
            predictions[k],
            gt_masks[k],
            gt_no_target=None if gt_no_target is None else bool(gt_no_target[k]),
            pred_no_target=None if pred_no_target is None else bool(pred_no_target[k]),
            ref_id=-1 if ref_ids is None else int(ref_ids[k]),
        )
        for k in range(n)
    ]
