"""Records from a post-processed prediction dict and a dataset row of the DESIGN schema."""

import numpy as np
import pytest
import torch

from refseg.data.masks import encode_mask
from refseg.metrics import (
    GRECRecord,
    MaskRecord,
    grec_record_for_row,
    rec_record_for_row,
    row_gt_boxes,
    row_gt_mask,
    segmentation_record_for_row,
)


def _instance(mask, bbox):
    return {"ann_id": 1, "category_id": 1, "bbox": bbox, "segmentation": encode_mask(mask)}


def _row():
    left = np.zeros((4, 6), bool)
    left[0:2, 0:2] = True  # 4 px, bbox [0, 0, 2, 2]
    right = np.zeros((4, 6), bool)
    right[2:4, 3:6] = True  # 6 px, bbox [3, 2, 3, 2]
    instances = [_instance(left, [0.0, 0.0, 2.0, 2.0]), _instance(right, [3.0, 2.0, 3.0, 2.0])]
    return {"ref_id": 5, "sent_id": 9, "no_target": False, "instances": instances}


def test_gt_mask_and_boxes_from_row():
    row = _row()
    assert row_gt_mask(row, 4, 6).sum() == 10
    np.testing.assert_array_equal(row_gt_boxes(row), [[0, 0, 2, 2], [3, 2, 6, 4]])
    assert row_gt_boxes({"instances": []}).shape == (0, 4)
    with pytest.raises(ValueError, match=r"RLE of size \(4, 6\), but the predicted mask is \(8, 8\)"):
        row_gt_mask(row, 8, 8)
    with pytest.raises(ValueError, match="no 'instances' field"):
        row_gt_mask({"no_target": True}, 4, 6)


def test_records_for_row():
    row = _row()
    pred_mask = torch.zeros(4, 6, dtype=torch.bool)
    pred_mask[0:2, 0:3] = True  # 6 px, overlaps the left instance on its 4 px
    prediction = {
        "mask": pred_mask,
        "no_target": False,
        "target_score": 0.9,
        "instances": [
            {
                "mask": pred_mask,
                "box": torch.tensor([0.0, 0.0, 3.0, 2.0]),
                "score": 0.9,
            },  # IoU with left: 4/6
            {"mask": pred_mask, "box": torch.tensor([3.0, 2.0, 6.0, 4.0]), "score": 0.8},  # exact right box
        ],
    }
    # I = 4, |P| = 6, |G| = 10, U = 12; flags and ref_id come from the row
    assert segmentation_record_for_row(prediction, row) == MaskRecord(4, 12, 6, 10, False, False, ref_id=5)
    # GIoU(left pred, left GT) = 4/6 (enclosing box = the predicted box) >= 0.5: both match
    assert grec_record_for_row(prediction, row) == GRECRecord(2, 2, 2, False)
    negative = {"ref_id": 5, "no_target": True, "instances": []}
    assert segmentation_record_for_row(prediction, negative) == MaskRecord(0, 6, 6, 0, False, True, ref_id=5)
    assert grec_record_for_row(prediction, negative) == GRECRecord(2, 0, 0, True)
    single = {"no_target": False, "instances": row["instances"][:1]}
    assert rec_record_for_row(prediction, single).iou == pytest.approx(4 / 6)
