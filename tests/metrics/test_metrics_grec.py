"""GREC metrics (gRefCOCO's evaluator): thresholds, greedy GIoU matching, duplicates, extra boxes, no-target."""

import pytest
import torch

from refseg.metrics import GRECRecord, grec_metrics, grec_record, grec_record_from_prediction
from refseg.metrics.grec import greedy_giou_matches

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]


def _correct(record):
    return grec_metrics([record], resolution="original")["Pr@(F1=1, IoU>=0.5)"] == 100.0


def test_exact_match_of_two_targets():
    rec = grec_record([B, A], [0.9, 0.8], [A, B])
    assert rec == GRECRecord(num_pred=2, num_gt=2, num_matched=2, gt_no_target=False)
    assert _correct(rec)


def test_duplicate_box_is_a_false_positive():
    # two kept boxes on the same GT: one match (one-to-one), FP = 1 -> F1 = 2/3 < 1 -> wrong
    rec = grec_record([A, [0.0, 0.0, 10.0, 9.0]], [0.95, 0.9], [A])
    assert (rec.num_pred, rec.num_matched) == (2, 1)
    assert not _correct(rec)


def test_extra_box_missed_target_and_score_threshold():
    # an extra kept box far away from the single GT -> FP -> wrong; but T-acc still counts it as TN
    extra = grec_record([A, B], [0.9, 0.7], [A])  # score 0.7 is kept (>=)
    assert (extra.num_pred, extra.num_matched) == (2, 1) and not _correct(extra)
    # the same extra box below the threshold is ignored -> correct
    assert _correct(grec_record([A, B], [0.9, 0.69], [A]))
    # a missed target (FN = 1) -> wrong
    missed = grec_record([A], [0.9], [A, B])
    assert (missed.num_matched, missed.num_gt) == (1, 2) and not _correct(missed)
    # a correct box with a low score does not count at all -> FP for T-acc, F1 = 0
    low = grec_record([A], [0.5], [A])
    assert low.num_pred == 0
    res = grec_metrics([extra, low], resolution="original")
    assert res["T-acc"] == pytest.approx(50.0)  # extra: TN (>= 1 box kept), low: FP
    assert res["N-acc"] == 0.0 and res["num_no_target"] == 0


def test_no_target_expressions_both_ways_and_empty_predictions():
    ok = grec_record([A], [0.3], [], gt_no_target=True)  # nothing kept -> TP, F1 = 1
    bad = grec_record([A], [0.8], [], gt_no_target=True)  # one kept box -> FN, F1 = 0
    none = grec_record([], [], [])  # no prediction at all, gt_no_target defaults to True
    missed = grec_record(torch.zeros(0, 4), torch.zeros(0), [A])  # target, no prediction: FP, wrong
    assert none == GRECRecord(0, 0, 0, True)
    res = grec_metrics([ok, bad, none, missed], resolution="original")
    assert res["Pr@(F1=1, IoU>=0.5)"] == pytest.approx(50.0)  # ok, none
    assert res["N-acc"] == pytest.approx(200 / 3)  # TP = 2 (ok, none), FN = 1 (bad)
    assert res["T-acc"] == 0.0  # TN = 0, FP = 1
    assert res["num_samples"] == 4 and res["num_no_target"] == 3
    assert res["definition"].startswith("gRefCOCO GREC evaluator")
    # the GT boxes of a no-target expression are ignored
    assert grec_record([], [], [A], gt_no_target=True).num_gt == 0


def test_threshold_is_on_generalized_iou():
    # pred shifted diagonally by 1.8 from A: I = 8.2^2 = 67.24, U = 200 - 67.24 = 132.76, IoU = 0.5065,
    # enclosing C = 11.8^2 = 139.24, GIoU = IoU - (139.24 - 132.76) / 139.24 = 0.4599 < 0.5 -> no match
    shifted = [1.8, 1.8, 11.8, 11.8]
    assert grec_record([shifted], [0.9], [A]).num_matched == 0
    # shifted by 1.5: IoU = 72.25 / 127.75 = 0.5656, GIoU = 0.5656 - 4.5 / 132.25 = 0.5315 -> match
    assert grec_record([[1.5, 1.5, 11.5, 11.5]], [0.9], [A]).num_matched == 1


def test_matching_is_greedy_not_optimal():
    # 1-D intervals (all boxes span y in [0, 10], so GIoU = IoU for overlapping ones):
    # GT a = [0, 10], b = [2, 12]; p1 = [0.5, 10.5], p2 = [-2, 8]
    # GIoU(p1, a) = 9.5/10.5 = 0.905, GIoU(p1, b) = 8.5/11.5 = 0.739,
    # GIoU(p2, a) = 8/12 = 0.667, GIoU(p2, b) = 6/14 = 0.429.
    # Greedy takes (p1, a) first; then (p2, b) = 0.429 < 0.5 -> 1 match (the optimum, p1-b + p2-a, has 2).
    gt = [[0, 0, 10, 10], [2, 0, 12, 10]]
    preds = [[0.5, 0, 10.5, 10], [-2, 0, 8, 10]]
    rec = grec_record(preds, [0.9, 0.8], gt)
    assert rec.num_matched == 1 and not _correct(rec)
    gt_t = torch.tensor(gt, dtype=torch.float64)
    assert greedy_giou_matches(torch.tensor(preds, dtype=torch.float64), gt_t, 0.5) == 1
    assert greedy_giou_matches(torch.zeros(0, 4), gt_t, 0.5) == 0


def test_box_formats_prediction_dicts_and_errors():
    # COCO xywh input gives the same record as xyxy
    assert grec_record([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]], box_format="xywh") == grec_record(
        [A], [0.9], [A]
    )
    prediction = {
        "mask": torch.zeros(32, 32, dtype=torch.bool),
        "no_target": False,
        "target_score": 0.9,
        "instances": [
            {"mask": torch.zeros(32, 32, dtype=torch.bool), "box": torch.tensor(A), "score": 0.9},
            {"mask": torch.zeros(32, 32, dtype=torch.bool), "box": torch.tensor(B), "score": 0.8},
        ],
    }
    assert grec_record_from_prediction(prediction, [A, B]) == GRECRecord(2, 2, 2, False)
    empty = {"mask": None, "no_target": True, "target_score": 0.0, "instances": []}
    assert grec_record_from_prediction(empty, []) == GRECRecord(0, 0, 0, True)
    with pytest.raises(ValueError, match="no 'instances' key"):
        grec_record_from_prediction({"mask": None}, [A])
    with pytest.raises(ValueError, match="2 predicted boxes but 1 scores"):
        grec_record([A, B], [0.9], [A])
    with pytest.raises(ValueError, match="needs at least one ground-truth box"):
        grec_record([A], [0.9], [], gt_no_target=False)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        grec_record([[0, 0, 1]], [0.9], [A])
    with pytest.raises(ValueError, match="x1 >= x0"):
        grec_record([[5, 5, 1, 1]], [0.9], [A])
    with pytest.raises(ValueError, match="different thresholds"):
        grec_metrics(
            [grec_record([A], [0.9], [A]), grec_record([A], [0.9], [A], score_threshold=0.5)],
            resolution="original",
        )
    with pytest.raises(ValueError, match=r"num_matched=2 must be in \[0, min"):
        grec_metrics([GRECRecord(1, 2, 2, False)], resolution="original")


def test_split_aggregation_and_custom_thresholds():
    records = [
        grec_record([A], [0.9], [A]),
        grec_record([A, B], [0.9, 0.9], [A]),
        grec_record([], [], []),
        grec_record([B], [0.9], [], gt_no_target=True),
        grec_record([A, B], [0.9, 0.8], [B, A]),
    ]
    whole = grec_metrics(records, resolution=320)
    assert whole["Pr@(F1=1, IoU>=0.5)"] == pytest.approx(60.0)
    assert grec_metrics(records[3:] + records[:3], resolution=320) == whole
    strict = grec_metrics(
        [grec_record([[1.5, 1.5, 11.5, 11.5]], [0.9], [A], iou_threshold=0.6)], resolution=320
    )
    assert strict["Pr@(F1=1, IoU>=0.6)"] == 0.0 and strict["iou_threshold"] == 0.6
