"""Per-sample records: pixel counts from masks / prediction dicts, record validation, resolution strings."""

import numpy as np
import pytest
import torch

from refseg.metrics import (
    MaskRecord,
    batch_mask_counts,
    format_resolution,
    gres_metrics,
    mask_counts,
    segmentation_record,
    segmentation_records,
)
from refseg.metrics.mask_records import mask_columns

# 3x4 masks:            pred            gt
#                       1 1 0 0         0 1 1 0
#                       1 1 0 0         0 1 1 0
#                       0 0 0 0         0 0 0 0
# I = 2, |P| = 4, |G| = 4, U = 4 + 4 - 2 = 6
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
GT = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)


def test_mask_counts_numpy_torch_and_dtypes():
    assert mask_counts(PRED, GT) == (2, 6, 4, 4)
    assert mask_counts(torch.from_numpy(PRED), torch.from_numpy(GT)) == (2, 6, 4, 4)
    assert mask_counts(torch.from_numpy(PRED), GT) == (2, 6, 4, 4)  # mixed inputs
    assert mask_counts(PRED.astype(np.uint8) * 255, GT.astype(np.float32)) == (2, 6, 4, 4)  # nonzero = fg
    empty = np.zeros_like(PRED)
    assert mask_counts(empty, empty) == (0, 0, 0, 0)


def test_mask_counts_shape_errors():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 4\) and \(4, 3\)"):
        mask_counts(PRED, GT.T)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_counts(PRED[None], GT[None])
    with pytest.raises(ValueError, match="numpy array, a torch tensor or a PIL image"):
        mask_counts("mask", GT)


def test_batch_counts_match_single_counts():
    preds = np.stack([PRED, GT, np.zeros_like(PRED)])
    gts = np.stack([GT, GT, PRED])
    expected = [[2, 6, 4, 4], [4, 4, 4, 4], [0, 4, 0, 4]]
    np.testing.assert_array_equal(batch_mask_counts(preds, gts), expected)
    np.testing.assert_array_equal(batch_mask_counts(torch.from_numpy(preds), torch.from_numpy(gts)), expected)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        batch_mask_counts(PRED, GT)


def test_segmentation_record_from_prediction_dict():
    prediction = {"mask": torch.from_numpy(PRED), "no_target": True, "target_score": 0.2, "instances": []}
    rec = segmentation_record(prediction, GT)
    assert rec == MaskRecord(2, 6, 4, 4, pred_no_target=True, gt_no_target=False, ref_id=-1)
    # a bare mask: the predicted flag defaults to False; an empty GT defaults to no-target
    rec = segmentation_record(PRED, np.zeros_like(GT), ref_id=7)
    assert rec == MaskRecord(0, 4, 4, 0, pred_no_target=False, gt_no_target=True, ref_id=7)
    # explicit flags win over the defaults
    rec = segmentation_record(prediction, GT, pred_no_target=False, gt_no_target=True)
    assert (rec.pred_no_target, rec.gt_no_target) == (False, True)
    with pytest.raises(ValueError, match="no 'mask' key"):
        segmentation_record({"no_target": False}, GT)


def test_segmentation_records_stacked_equals_listed():
    preds = np.stack([PRED, GT])
    gts = np.stack([GT, np.zeros_like(GT)])
    stacked = segmentation_records(preds, gts, pred_no_target=[False, True], ref_ids=[3, 4])
    listed = segmentation_records(
        [{"mask": PRED, "no_target": False}, {"mask": GT, "no_target": True}], list(gts), ref_ids=[3, 4]
    )
    assert stacked == listed
    assert stacked[1] == MaskRecord(0, 4, 4, 0, pred_no_target=True, gt_no_target=True, ref_id=4)
    with pytest.raises(ValueError, match="2 predictions but 1 ground-truth"):
        segmentation_records(preds, gts[:1])
    with pytest.raises(ValueError, match="ref_ids has 1 entries for 2 predictions"):
        segmentation_records(preds, gts, ref_ids=[1])


def test_record_inputs_and_validation():
    rec = MaskRecord(2, 6, 4, 4)
    as_dicts = [{"intersection": 2, "union": 6, "pred_area": 4, "gt_area": 4}]
    as_columns = {"intersection": torch.tensor([2]), "union": [6], "pred_area": np.array([4]), "gt_area": [4]}
    expected = gres_metrics([rec], resolution="original")
    assert gres_metrics(as_dicts, resolution="original") == expected
    assert gres_metrics(as_columns, resolution="original") == expected
    with pytest.raises(
        ValueError, match="were the prediction and the ground truth counted at the same resolution"
    ):
        mask_columns([MaskRecord(2, 7, 4, 4)])  # U != |P| + |G| - I
    with pytest.raises(ValueError, match="inconsistent mask record 0"):
        mask_columns([MaskRecord(5, 4, 4, 5)])  # I > |P|
    with pytest.raises(ValueError, match="missing the field 'gt_area'"):
        mask_columns([{"intersection": 2, "union": 6, "pred_area": 4}])
    with pytest.raises(ValueError, match="record 1 has no field 'union'"):
        mask_columns([{"intersection": 0, "union": 0, "pred_area": 0, "gt_area": 0}, {"intersection": 0}])
    with pytest.raises(ValueError, match="different lengths"):
        mask_columns({"intersection": [1, 2], "union": [1], "pred_area": [1], "gt_area": [1]})
    with pytest.raises(ValueError, match="zero samples"):
        mask_columns([])


def test_format_resolution():
    assert format_resolution("original") == "original"
    assert format_resolution("480x480") == "480x480"
    assert format_resolution(320) == "320x320"
    assert format_resolution((480, 640)) == "480x640"
    for bad in ("480", "480X480", "full", 0, (480,), (480, 0), True, None):
        with pytest.raises(ValueError, match="resolution must be"):
            format_resolution(bad)
