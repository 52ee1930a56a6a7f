"""R-RefCOCO metrics (RefSegformer's evaluator): grouping by ref, FP areas in the union, gating, edge cases."""

import numpy as np
import pytest

from refseg.metrics import MaskRecord, rrefcoco_metrics, rrefcoco_ref_scores


def _records():
    return [
        # ref 10: two positives, three negatives
        MaskRecord(8, 10, 9, 9, ref_id=10),  # IoU 0.8
        MaskRecord(4, 10, 6, 8, ref_id=10),  # IoU 0.4
        MaskRecord(0, 3, 3, 0, gt_no_target=True, ref_id=10),  # FP, area 3
        MaskRecord(0, 0, 0, 0, gt_no_target=True, ref_id=10),  # TN
        MaskRecord(0, 0, 0, 0, gt_no_target=True, ref_id=10),  # TN
        # ref 20: one positive, one negative
        MaskRecord(5, 5, 5, 5, ref_id=20),  # IoU 1
        MaskRecord(0, 5, 5, 0, gt_no_target=True, ref_id=20),  # FP, area 5
    ]


def test_golden_two_refs():
    res = rrefcoco_metrics(_records(), resolution="original")
    # ref 10: I = 12, U = 20, IoU_ref = (0.8 + 0.4) / 2 = 0.6, r = 2/3, U' = 20 + 3 = 23, rIoU = 12/23
    # ref 20: I = 5, U = 5, IoU_ref = 1, r = 0, U' = 5 + 5 = 10, rIoU = 0.5
    assert res["mIoU"] == pytest.approx(100 * (0.6 + 1.0) / 2)
    assert res["oIoU"] == pytest.approx(100 * 17 / 25)
    assert res["mRR"] == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert res["rIoU"] == pytest.approx(100 * (12 / 23 + 0.5) / 2)
    assert res["num_refs"] == 2 and res["num_refs_without_negatives"] == 0
    assert (
        res["definition"].startswith("RefSegformer R-RefCOCO evaluator") and res["resolution"] == "original"
    )
    refs = rrefcoco_ref_scores(_records())
    np.testing.assert_array_equal(refs["ref_id"], [10, 20])
    np.testing.assert_allclose(refs["U_prime"], [23, 10])


def test_ref_without_negatives_is_left_out_of_mrr_only():
    records = _records() + [MaskRecord(3, 6, 3, 6, ref_id=30)]  # ref 30: IoU 0.5, no negatives
    res = rrefcoco_metrics(records, resolution="original")
    assert res["mRR"] == pytest.approx(100 * (2 / 3 + 0) / 2)  # official: nan; here: mean over refs 10, 20
    assert res["mIoU"] == pytest.approx(100 * (0.6 + 1.0 + 0.5) / 3)
    assert res["rIoU"] == pytest.approx(100 * (12 / 23 + 0.5 + 0.5) / 3)  # U' = U for ref 30
    assert res["num_refs_without_negatives"] == 1
    only = rrefcoco_metrics([MaskRecord(1, 2, 1, 2, ref_id=1)], resolution="original")
    assert only["mRR"] == 0.0 and only["mIoU"] == 50.0


def test_gating_with_the_no_target_flag():
    records = [
        MaskRecord(4, 5, 4, 5, pred_no_target=True, ref_id=1),  # gated positive: I = 0, U = |G| = 5
        MaskRecord(0, 6, 6, 0, gt_no_target=True, pred_no_target=True, ref_id=1),  # gated negative: TN
        MaskRecord(0, 2, 2, 0, gt_no_target=True, ref_id=1),  # FP, area 2
    ]
    gated = rrefcoco_metrics(records, resolution="original")
    assert (gated["mIoU"], gated["oIoU"]) == (0.0, 0.0)
    assert gated["mRR"] == pytest.approx(50.0)
    assert gated["rIoU"] == 0.0  # I = 0, U' = 5 + 2
    ungated = rrefcoco_metrics(records, resolution="original", gate_with_no_target=False)
    assert ungated["mIoU"] == pytest.approx(80.0)  # 4 / 5
    assert ungated["mRR"] == 0.0  # both negatives have pixels
    assert ungated["rIoU"] == pytest.approx(100 * 4 / (5 + 6 + 2))


def test_instancevg_flag_rule():
    records = [
        MaskRecord(4, 5, 4, 5, ref_id=1),
        MaskRecord(0, 0, 0, 0, gt_no_target=True, pred_no_target=False, ref_id=1),  # FP by flag, area 0
        MaskRecord(0, 3, 3, 0, gt_no_target=True, pred_no_target=True, ref_id=1),  # TN by flag
    ]
    res = rrefcoco_metrics(records, resolution="320x320", no_target_rule="flag")
    assert res["mRR"] == pytest.approx(50.0)
    assert res["rIoU"] == pytest.approx(80.0)  # the FP adds its area 0
    official = rrefcoco_metrics(records, resolution="320x320")
    assert official["mRR"] == pytest.approx(100.0)  # empty mask -> TN; gated 3 px -> TN


def test_errors_and_split_aggregation():
    with pytest.raises(ValueError, match="need a ref_id >= 0"):
        rrefcoco_metrics([MaskRecord(1, 1, 1, 1)], resolution="original")
    with pytest.raises(ValueError, match=r"refs \[7\] have none"):
        rrefcoco_metrics(
            [MaskRecord(1, 1, 1, 1, ref_id=1), MaskRecord(0, 0, 0, 0, gt_no_target=True, ref_id=7)],
            resolution="original",
        )
    with pytest.raises(ValueError, match="no_target_rule"):
        rrefcoco_metrics(_records(), resolution="original", no_target_rule="x")
    records = _records()
    whole = rrefcoco_metrics(records, resolution="original")
    # two processes, each holding sentences of both refs: concatenated records give the same numbers
    assert rrefcoco_metrics(records[1::2] + records[::2], resolution="original") == pytest.approx(whole)


def test_zero_union_positive_counts_as_zero():
    # a positive whose GT vanished at the evaluation resolution and an empty prediction: I/U = 0/0 -> 0
    # (official: nan); with no FP the ref's U' = 0 as well -> rIoU_ref = 0
    records = [MaskRecord(0, 0, 0, 0, ref_id=1), MaskRecord(0, 0, 0, 0, gt_no_target=True, ref_id=1)]
    res = rrefcoco_metrics(records, resolution="original")
    assert (res["mIoU"], res["oIoU"], res["mRR"], res["rIoU"]) == (0.0, 0.0, 100.0, 0.0)
