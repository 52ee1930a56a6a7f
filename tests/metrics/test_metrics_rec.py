"""REC Precision@0.5: top-scoring box, inclusive threshold, IoU vs MDETR's GIoU, empty predictions."""

import pytest
import torch

from refseg.metrics import RECRecord, rec_metrics, rec_record, rec_record_from_prediction

GT = [0.0, 0.0, 10.0, 10.0]


def test_top_scoring_box_is_used():
    # the better box has the lower score: only the top-1 box counts
    rec = rec_record([[50, 50, 60, 60], GT], [0.9, 0.3], GT)
    assert rec.iou == 0.0
    assert rec_record([[50, 50, 60, 60], GT], [0.3, 0.9], GT).iou == pytest.approx(1.0)
    assert rec_record([GT, [50, 50, 60, 60]], None, GT).iou == 1.0  # no scores: the first box


def test_golden_precision_and_inclusive_threshold():
    records = [
        rec_record([[0, 0, 10, 5]], [1.0], GT),  # IoU = 50/100 = 0.5 exactly -> correct
        rec_record([[0, 0, 10, 4]], [1.0], GT),  # IoU = 0.4 -> wrong
        rec_record([[1, 1, 10, 10]], [1.0], GT),  # IoU = 81/100 -> correct
        rec_record(torch.zeros(0, 4), torch.zeros(0), GT),  # nothing predicted -> wrong
    ]
    assert [r.iou for r in records] == pytest.approx([0.5, 0.4, 0.81, -1.0])
    res = rec_metrics(records, resolution="original")
    assert res["Precision@0.5"] == pytest.approx(50.0)
    assert res["num_samples"] == 4 and res["resolution"] == "original"
    assert res["definition"].startswith("REC Precision@0.5, top-1 box IoU")
    # split into two processes and concatenated
    assert rec_metrics(records[2:] + records[:2], resolution="original") == res


def test_giou_variant_of_mdetr():
    # diagonal shift by 1.8: IoU = 0.5065 (correct), GIoU = 0.4599 (wrong)
    box = [[1.8, 1.8, 11.8, 11.8]]
    iou = rec_record(box, [1.0], GT)
    giou = rec_record(box, [1.0], GT, iou_type="giou")
    assert iou.iou == pytest.approx(67.24 / 132.76)
    assert giou.iou == pytest.approx(67.24 / 132.76 - 6.48 / 139.24)
    assert rec_metrics([iou], resolution=(480, 640))["Precision@0.5"] == 100.0
    res = rec_metrics([giou], resolution=(480, 640), iou_type="giou")
    assert res["Precision@0.5"] == 0.0 and res["definition"].startswith("REC Precision@1, top-1 box GIoU")


def test_prediction_dict_and_errors():
    prediction = {
        "mask": torch.zeros(4, 4, dtype=torch.bool),
        "no_target": False,
        "target_score": 0.9,
        "instances": [
            {
                "mask": torch.zeros(4, 4, dtype=torch.bool),
                "box": torch.tensor([0.0, 0.0, 10.0, 5.0]),
                "score": 0.4,
            },
            {"mask": torch.zeros(4, 4, dtype=torch.bool), "box": torch.tensor(GT), "score": 0.8},
        ],
    }
    assert rec_record_from_prediction(prediction, GT) == RECRecord(iou=1.0)
    assert rec_record_from_prediction({"instances": []}, GT) == RECRecord(iou=-1.0)
    assert rec_record([[0, 0, 10, 10]], [1.0], [0, 0, 10, 10], box_format="xywh").iou == 1.0
    with pytest.raises(ValueError, match="exactly one ground-truth box"):
        rec_record([GT], [1.0], [GT, GT])
    with pytest.raises(ValueError, match="iou_type"):
        rec_record([GT], [1.0], GT, iou_type="dice")
    with pytest.raises(ValueError, match="1 predicted boxes but 2 scores"):
        rec_record([GT], [1.0, 0.5], GT)
    with pytest.raises(ValueError, match="zero samples"):
        rec_metrics([], resolution="original")
