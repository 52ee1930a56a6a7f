"""Metrics refuse what they would otherwise count silently: non-binary masks, non-finite scores and boxes,
NaN or fractional counts and flags. Each error names the argument or field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refseg.metrics import (
    batch_mask_counts,
    grec_metrics,
    grec_record,
    gres_metrics,
    mask_counts,
    rec_metrics,
    rec_record,
    segmentation_record,
)

GT = np.zeros((3, 4), dtype=bool)
GT[0, :2] = True
NON_BINARY = {
    "float probabilities": np.full((3, 4), 0.3),
    "torch probabilities": torch.full((3, 4), 0.7),
    "NaN in a float mask": np.where(GT, np.nan, 0.0),
    "NaN in a tensor": torch.full((3, 4), float("nan")),
    "label map": np.array([[0, 1, 2, 0]] * 3),
    "0/1/255 mixed": np.array([[0, 1, 255, 0]] * 3, dtype=np.uint8),
    "logits": torch.tensor([[-3.0, 2.0, 0.0, 0.0]] * 3),
    "float 0/255": GT.astype(np.float32) * 255,
}


@pytest.mark.parametrize("mask", NON_BINARY.values(), ids=NON_BINARY.keys())
def test_non_binary_masks_are_refused_naming_the_argument(mask):
    with pytest.raises(ValueError, match=r"^pred_mask must be a binary mask \(bool, integers all 0/1"):
        mask_counts(mask, GT)
    with pytest.raises(ValueError, match=r"^gt_mask must be a binary mask"):
        mask_counts(GT, mask)
    with pytest.raises(ValueError, match="pred_mask must be a binary mask"):
        segmentation_record({"mask": mask, "no_target": False}, GT)


def test_nan_is_named_in_the_message():
    with pytest.raises(ValueError, match=r"got float64 with NaN; threshold probabilities or logits first"):
        mask_counts(np.where(GT, np.nan, 0.0), GT)


def test_batch_names_the_batch_argument():
    with pytest.raises(ValueError, match=r"^pred_masks must be a binary mask .* values in \[0\.5, 0\.5\]"):
        batch_mask_counts(torch.full((2, 3, 4), 0.5), torch.zeros(2, 3, 4, dtype=torch.bool))


BINARY = {
    "bool": GT,
    "uint8 0/1": GT.astype(np.uint8),
    "uint8 0/255": GT.astype(np.uint8) * 255,
    "float 0.0/1.0": GT.astype(np.float32),
    "tensor float16 0/1": torch.from_numpy(GT).half(),
    "PIL L 0/255": Image.fromarray(GT.astype(np.uint8) * 255),
    "PIL 1": Image.fromarray(GT),
}


@pytest.mark.parametrize("mask", BINARY.values(), ids=BINARY.keys())
def test_binary_masks_of_every_kind_count_the_same(mask):
    assert mask_counts(mask, GT) == (2, 2, 2, 2)


def test_nan_score_never_wins_rec():
    boxes, gt = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 10.0, 10.0]], [0.0, 0.0, 10.0, 10.0]
    assert rec_record(boxes, [0.1, 0.9], gt).iou == 1.0
    for scores in ([float("nan"), 0.9], torch.tensor([0.1, float("inf")])):
        with pytest.raises(
            ValueError, match=r"^pred_scores must be finite, got (nan at index 0|inf at index 1)"
        ):
            rec_record(boxes, scores, gt)


def test_non_finite_grec_scores_and_boxes_are_refused():
    with pytest.raises(ValueError, match=r"pred_scores must be finite, got nan at index 1"):
        grec_record([[0, 0, 1, 1], [0, 0, 2, 2]], [0.9, float("nan")], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"pred_boxes must hold finite coordinates, got \[0\.0, 0\.0, nan"):
        grec_record([[0, 0, float("nan"), 1]], [0.9], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"gt_box must hold finite coordinates"):
        rec_record([[0, 0, 1, 1]], [0.9], [0, 0, float("inf"), 1])


COUNTS = {"intersection": [2], "union": [6], "pred_area": [4], "gt_area": [4]}
BAD_COLUMNS = {
    "NaN intersection": (
        {"intersection": [float("nan")]},
        "field 'intersection' must be a whole number, got nan",
    ),
    "fractional union": ({"intersection": [2.5]}, "field 'intersection' must be a whole number, got 2.5"),
    "None count": ({"gt_area": [None]}, "field 'gt_area' must be a whole number, got None"),
    "boolean count": ({"pred_area": [True]}, "field 'pred_area' must be a whole number, got True"),
    "NaN flag": (
        {"gt_no_target": [float("nan")]},
        "field 'gt_no_target' must be a flag (True/False or 0/1), got nan",
    ),
    "flag 2": ({"pred_no_target": [2]}, "field 'pred_no_target' must be a flag (True/False or 0/1), got 2"),
}


@pytest.mark.parametrize("change, message", BAD_COLUMNS.values(), ids=BAD_COLUMNS.keys())
def test_nan_or_fractional_mask_records_get_clear_messages(change, message):
    with pytest.raises(ValueError) as err:
        gres_metrics({**COUNTS, **change}, resolution="original")
    assert str(err.value) == f"mask record 0: {message}"


def test_whole_float_counts_are_accepted():
    assert gres_metrics({**COUNTS, "intersection": [2.0]}, resolution="original")["cIoU"] == pytest.approx(
        100 / 3
    )


def test_grec_and_rec_records_are_checked():
    grec = {"num_pred": [1], "num_gt": [1], "num_matched": [float("nan")], "gt_no_target": [False]}
    with pytest.raises(
        ValueError, match=r"^GREC record 0: field 'num_matched' must be a whole number, got nan$"
    ):
        grec_metrics(grec, resolution="original")
    with pytest.raises(ValueError, match=r"^REC record 1: field 'iou' must be a finite number, got nan$"):
        rec_metrics({"iou": [0.7, float("nan")]}, resolution="original")
