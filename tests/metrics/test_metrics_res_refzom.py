"""RES (LAVT) and Ref-ZOM (DMMI) metrics: hand-computed cases, zero-target handling, zero unions."""

import pytest

from refseg.metrics import MaskRecord, refzom_metrics, res_metrics


def test_res_golden():
    # IoUs: 3/4 = 0.75, 1/5 = 0.2, 9/10 = 0.9
    records = [MaskRecord(3, 4, 3, 4), MaskRecord(1, 5, 3, 3), MaskRecord(9, 10, 10, 9)]
    res = res_metrics(records, resolution="480x480")
    assert res["mIoU"] == pytest.approx(100 * (0.75 + 0.2 + 0.9) / 3)  # 61.67
    assert res["oIoU"] == pytest.approx(100 * 13 / 19)  # (3 + 1 + 9) / (4 + 5 + 10)
    # P@t: share of sentences with IoU >= t (inclusive)
    assert res["P@0.5"] == pytest.approx(200 / 3)
    assert res["P@0.6"] == pytest.approx(200 / 3)
    assert res["P@0.7"] == pytest.approx(200 / 3)
    assert res["P@0.8"] == pytest.approx(100 / 3)
    assert res["P@0.9"] == pytest.approx(100 / 3)
    assert res["num_samples"] == 3
    assert res["definition"].startswith("LAVT refcoco evaluator") and res["resolution"] == "480x480"
    # records of two processes, concatenated in any order
    assert res_metrics(records[2:] + records[:2], resolution="480x480") == pytest.approx(res)


def test_res_ignores_no_target_flags_and_guards_zero_union():
    # a predicted no-target flag does not change RES scores (LAVT has no such head)
    assert res_metrics([MaskRecord(3, 4, 3, 4, pred_no_target=True)], resolution="original")["mIoU"] == 75.0
    # empty prediction and empty GT: U = 0 -> IoU 0 and oIoU guarded to 0
    res = res_metrics([MaskRecord(0, 0, 0, 0)], resolution="original")
    assert (res["mIoU"], res["oIoU"], res["P@0.5"]) == (0.0, 0.0, 0.0)


def _refzom_records():
    return [
        MaskRecord(6, 8, 7, 7),  # target, IoU 0.75
        MaskRecord(2, 10, 4, 8),  # target, IoU 0.2
        MaskRecord(0, 0, 0, 0, pred_no_target=True, gt_no_target=True),  # zero-target, empty mask, flag set
        MaskRecord(0, 5, 5, 0, pred_no_target=True, gt_no_target=True),  # zero-target, 5 px, flag set
        MaskRecord(0, 0, 0, 0, pred_no_target=False, gt_no_target=True),  # zero-target, empty, flag unset
    ]


def test_refzom_golden_official_empty_mask_rule():
    res = refzom_metrics(_refzom_records(), resolution="480x480")
    # zero-target sentences never enter the IoUs
    assert res["mIoU"] == pytest.approx(100 * (0.75 + 0.2) / 2)
    assert res["oIoU"] == pytest.approx(100 * 8 / 18)
    assert res["P@0.5"] == pytest.approx(50.0) and res["P@0.8"] == 0.0
    # DMMI: correct iff the predicted mask is empty -> records 3 and 5 correct, 4 wrong (despite its flag)
    assert res["Acc"] == pytest.approx(200 / 3)
    assert res["num_no_target"] == 3 and res["num_samples"] == 5
    assert res["definition"].startswith("DMMI Ref-ZOM evaluator")


def test_refzom_instancevg_flag_rule():
    res = refzom_metrics(_refzom_records(), resolution="320x320", no_target_rule="flag")
    # InstanceVG: correct iff the no-target flag is set -> records 3 and 4 correct, 5 wrong
    assert res["Acc"] == pytest.approx(200 / 3)
    assert res["mIoU"] == pytest.approx(47.5)
    assert res["definition"].startswith("InstanceVG Ref-ZOM evaluator")
    with pytest.raises(ValueError, match="no_target_rule must be one of"):
        refzom_metrics(_refzom_records(), resolution="original", no_target_rule="score")


def test_refzom_groups_may_be_empty_and_split_aggregation():
    only_zero = [MaskRecord(0, 0, 0, 0, gt_no_target=True), MaskRecord(0, 3, 3, 0, gt_no_target=True)]
    res = refzom_metrics(only_zero, resolution="original")
    assert (res["mIoU"], res["oIoU"], res["Acc"]) == (0.0, 0.0, 50.0)
    only_targets = [MaskRecord(1, 2, 1, 2)]
    assert refzom_metrics(only_targets, resolution="original")["Acc"] == 0.0
    records = _refzom_records()
    whole = refzom_metrics(records, resolution="original")
    assert refzom_metrics(records[3:] + records[:3], resolution="original") == pytest.approx(whole)
