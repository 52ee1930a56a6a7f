"""GRES metrics (ReLA's evaluator): every case of the table, its quirks and multi-process aggregation."""

import numpy as np
import pytest

from refseg.metrics import MaskRecord, gres_metrics, gres_sample_scores, segmentation_record


def _mask(rows):
    return np.array([[c == "#" for c in row] for row in rows])


def _golden_records():
    # 4x4 masks, one sample of each case of ReLA's table.
    # s1 target, predicted target (TN):  P = 6 px, G = 4 px, I = 4, U = 6  -> IoU 4/6, adds I=4, U=6
    p1 = _mask(["###.", "###.", "....", "...."])
    g1 = _mask(["##..", "##..", "....", "...."])
    # s2 target, predicted no-target (FP): P = 2 px (kept!), G = 4 px, I = 2 -> I := 0, U = |P u G| = 4
    p2 = _mask(["....", "....", "##..", "...."])
    g2 = _mask(["....", "....", "##..", "##.."])
    # s3 no-target, predicted no-target (TP) although P has 3 px: IoU 1, adds I=0, U=0
    p3 = _mask(["#...", "#...", "#...", "...."])
    # s4 no-target, predicted target (FN): P = 5 px -> IoU 0, adds I=0, U=|P|=5
    p4 = _mask(["####", "#...", "....", "...."])
    empty = np.zeros((4, 4), bool)
    return [
        segmentation_record({"mask": p1, "no_target": False}, g1, gt_no_target=False),
        segmentation_record({"mask": p2, "no_target": True}, g2, gt_no_target=False),
        segmentation_record({"mask": p3, "no_target": True}, empty, gt_no_target=True),
        segmentation_record({"mask": p4, "no_target": False}, empty, gt_no_target=True),
    ]


def test_golden_one_sample_per_case():
    records = _golden_records()
    assert [(r.intersection, r.union, r.pred_area, r.gt_area) for r in records] == [
        (4, 6, 6, 4),
        (2, 4, 2, 4),
        (0, 3, 3, 0),
        (0, 5, 5, 0),
    ]
    res = gres_metrics(records, resolution="480x480")
    # gIoU = 100 * (4/6 + 0 + 1 + 0) / 4 = 41.666...
    assert res["gIoU"] == pytest.approx(100 * (4 / 6 + 1) / 4)
    # cIoU = 100 * (4 + 0 + 0 + 0) / (6 + 4 + 0 + 5) = 26.666...
    assert res["cIoU"] == pytest.approx(100 * 4 / 15)
    # N-acc = TP / (TP + FN) = 1/2, T-acc = TN / (TN + FP) = 1/2 (in %)
    assert res["N-acc"] == pytest.approx(50.0)
    assert res["T-acc"] == pytest.approx(50.0)
    # Pr@t over the 2 target samples (IoUs 0.667 and 0): none >= 0.7
    assert (res["Pr@0.7"], res["Pr@0.8"], res["Pr@0.9"]) == (0.0, 0.0, 0.0)
    assert (res["TP"], res["FN"], res["FP"], res["TN"]) == (1, 1, 1, 1)
    assert res["num_samples"] == 4 and res["num_no_target"] == 2
    assert res["definition"].startswith("ReLA gres evaluator")
    assert res["resolution"] == "480x480"
    scores = gres_sample_scores(records)
    np.testing.assert_allclose(scores["iou"], [4 / 6, 0, 1, 0])
    np.testing.assert_allclose(scores["intersection"], [4, 0, 0, 0])
    np.testing.assert_allclose(scores["union"], [6, 4, 0, 5])


def test_false_positive_no_target_keeps_predicted_area_in_union():
    # target sample, model says "no target" but still outputs P (|P| = 10) far from G (|G| = 10):
    # ReLA does not zero P, so the sample adds U = |P u G| = 20 to the cumulative union.
    fp = MaskRecord(intersection=0, union=20, pred_area=10, gt_area=10, pred_no_target=True)
    tn = MaskRecord(intersection=10, union=10, pred_area=10, gt_area=10)  # perfect, IoU 1
    res = gres_metrics([fp, tn], resolution="original")
    assert res["cIoU"] == pytest.approx(100 * 10 / 30)  # not 10 / 20
    assert res["gIoU"] == pytest.approx(50.0)
    # and an FP with a *perfect* mask still gets IoU 0 and I = 0, but U = |P u G| = 10
    fp_perfect = MaskRecord(10, 10, 10, 10, pred_no_target=True)
    res = gres_metrics([fp_perfect, tn], resolution="original")
    assert res["gIoU"] == pytest.approx(50.0)
    assert res["cIoU"] == pytest.approx(100 * 10 / 20)
    assert res["T-acc"] == 0.0  # no no-target sample at all: ReLA reports 0 (quirk), see below


def test_true_positive_adds_nothing_and_false_negative_adds_predicted_area():
    tp = MaskRecord(0, 7, 7, 0, pred_no_target=True, gt_no_target=True)  # stray pixels ignored
    fn = MaskRecord(0, 7, 7, 0, pred_no_target=False, gt_no_target=True)
    tn = MaskRecord(3, 4, 3, 4)
    assert gres_metrics([tp, tn], resolution="original")["cIoU"] == pytest.approx(75.0)  # 3 / 4
    assert gres_metrics([fn, tn], resolution="original")["cIoU"] == pytest.approx(100 * 3 / 11)  # 3 / (7 + 4)
    res = gres_metrics([tp, fn, tn], resolution="original")
    assert res["gIoU"] == pytest.approx(100 * (1 + 0 + 0.75) / 3)
    assert res["N-acc"] == pytest.approx(50.0)
    assert res["T-acc"] == pytest.approx(100.0)


def test_empty_prediction_and_zero_union():
    # target sample whose GT vanished at the evaluation resolution and an empty prediction: U = 0 -> IoU 0
    zero_union = MaskRecord(0, 0, 0, 0, gt_no_target=False)
    empty_pred = MaskRecord(0, 5, 0, 5)  # empty prediction on a target: IoU 0, U = 5
    res = gres_metrics([zero_union, empty_pred], resolution="original")
    assert res["gIoU"] == 0.0 and res["cIoU"] == 0.0
    # only correctly rejected no-target samples: sum U = 0 -> cIoU guarded to 0, gIoU 100, T-acc 0 (no target)
    res = gres_metrics([MaskRecord(0, 0, 0, 0, True, True)] * 3, resolution="original")
    assert (res["gIoU"], res["cIoU"], res["N-acc"], res["T-acc"]) == (100.0, 0.0, 100.0, 0.0)
    assert (res["Pr@0.7"], res["Pr@0.9"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="zero samples"):
        gres_metrics([], resolution="original")


def test_no_no_target_samples_reports_zero_accuracies_like_rela():
    # ReLA: `if empty_count > 0: ... else: T_acc = N_acc = 0`, even when every target is found
    res = gres_metrics([MaskRecord(4, 4, 4, 4)] * 2, resolution="original")
    assert (res["N-acc"], res["T-acc"]) == (0.0, 0.0)
    assert res["gIoU"] == 100.0 and res["Pr@0.9"] == 100.0


def test_precision_thresholds_are_inclusive_and_over_targets_only():
    # target IoUs: 7/10 = 0.7 (counts for Pr@0.7), 8/10, 9/10, and 1 no-target TP (not counted)
    records = [MaskRecord(k, 10, k, 10) for k in (7, 8, 9)] + [MaskRecord(0, 0, 0, 0, True, True)]
    res = gres_metrics(records, resolution="original")
    assert res["Pr@0.7"] == pytest.approx(100.0)
    assert res["Pr@0.8"] == pytest.approx(200 / 3)
    assert res["Pr@0.9"] == pytest.approx(100 / 3)
    custom = gres_metrics(records, resolution="original", pr_thresholds=(0.5,))
    assert custom["Pr@0.5"] == 100.0 and "Pr@0.7" not in custom


def _loop_oracle(records):
    """Straight transcription of the table in refseg.metrics.gres's docstring, one sample at a time."""
    iou_sum = i_sum = u_sum = 0.0
    tp = fn = fp = tn = 0
    for r in records:
        if r.gt_no_target:
            if r.pred_no_target:
                tp += 1
                iou_sum += 1
            else:
                fn += 1
                u_sum += r.union
        else:
            inter = 0 if r.pred_no_target else r.intersection
            fp += r.pred_no_target
            tn += not r.pred_no_target
            iou_sum += inter / r.union if r.union else 0.0
            i_sum += inter
            u_sum += r.union
    return 100 * iou_sum / len(records), 100 * i_sum / u_sum, 100 * tp / (tp + fn), 100 * tn / (tn + fp)


def test_random_records_match_a_per_sample_loop_and_split_aggregation():
    rng = np.random.default_rng(0)
    records = []
    for _ in range(60):
        p = rng.random((6, 6)) < rng.random()
        g = (rng.random((6, 6)) < 0.4) if rng.random() < 0.7 else np.zeros((6, 6), bool)
        records.append(segmentation_record({"mask": p, "no_target": bool(rng.random() < 0.3)}, g))
    res = gres_metrics(records, resolution=480)
    assert (res["gIoU"], res["cIoU"], res["N-acc"], res["T-acc"]) == pytest.approx(_loop_oracle(records))
    # records from two processes, concatenated in another order, give the same result
    halves = records[1::2] + records[::2]
    assert gres_metrics(halves, resolution=480) == pytest.approx(res)
