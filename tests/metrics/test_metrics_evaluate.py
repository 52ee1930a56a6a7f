"""`evaluate` wrappers: direct classes and offline `evaluate.load(module_path(...))` give the pure functions' results."""

import os

import evaluate
import numpy as np
import pytest
import torch

import refseg.metrics as M
from refseg.metrics import MaskRecord, module_path
from refseg.metrics.evaluate_modules import GRECMetric, GRESMetric, RECMetric, RRefCOCOMetric

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]


def _mask_records():
    return [
        MaskRecord(4, 6, 6, 4, ref_id=1),
        MaskRecord(2, 4, 2, 4, pred_no_target=True, ref_id=1),
        MaskRecord(0, 3, 3, 0, pred_no_target=True, gt_no_target=True, ref_id=1),
        MaskRecord(0, 5, 5, 0, gt_no_target=True, ref_id=2),
        MaskRecord(3, 3, 3, 3, ref_id=2),
    ]


def test_offline():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py: nothing may reach the Hub


def test_gres_metric_add_masks_in_batches_equals_function():
    rng = np.random.default_rng(1)
    preds = rng.random((6, 5, 5)) < 0.5
    gts = rng.random((6, 5, 5)) < 0.4
    gts[4] = False
    pred_nt = [False, True, False, False, True, False]
    metric = GRESMetric(keep_in_memory=True)
    metric.add_masks(torch.from_numpy(preds[:3]), torch.from_numpy(gts[:3]), pred_no_target=pred_nt[:3])
    predictions = [{"mask": p, "no_target": nt} for p, nt in zip(preds[3:], pred_nt[3:])]
    metric.add_masks(predictions, list(gts[3:]))
    result = metric.compute(resolution="5x5")
    records = M.segmentation_records(preds, gts, pred_no_target=pred_nt)
    assert result == M.gres_metrics(records, resolution="5x5")
    assert result["num_no_target"] == 1 and result["resolution"] == "5x5"


def test_compute_requires_resolution():
    metric = GRESMetric(keep_in_memory=True)
    metric.add_records(_mask_records())
    with pytest.raises(ValueError, match="pass the evaluation resolution"):
        metric.compute()


def test_rrefcoco_metric_groups_by_ref_id():
    metric = RRefCOCOMetric(keep_in_memory=True)
    metric.add_records(_mask_records())
    assert metric.compute(resolution="original", gate_with_no_target=False) == M.rrefcoco_metrics(
        _mask_records(), resolution="original", gate_with_no_target=False
    )


def test_box_metrics_from_prediction_dicts():
    def pred(*boxes_scores):
        return {
            "mask": torch.zeros(2, 2, dtype=torch.bool),
            "no_target": not boxes_scores,
            "target_score": 0.5,
            "instances": [{"mask": None, "box": torch.tensor(b), "score": s} for b, s in boxes_scores],
        }

    grec = GRECMetric(keep_in_memory=True)
    grec.add_predictions([pred((A, 0.9)), pred((A, 0.9), (B, 0.8))], [[A], [A]])
    grec.add_predictions([pred(), pred((B, 0.95))], [[], []])
    res = grec.compute(resolution="original")
    # correct: 1st (exact), 3rd (no-target, nothing); wrong: 2nd (extra box), 4th (no-target with a box)
    assert res["Pr@(F1=1, IoU>=0.5)"] == 50.0 and res["N-acc"] == 50.0 and res["T-acc"] == 100.0
    rec = RECMetric(keep_in_memory=True)
    rec.add_predictions([pred((A, 0.9)), pred((B, 0.9), (A, 0.1)), pred()], [A, A, A])
    assert rec.compute(resolution="original")["Precision@0.5"] == pytest.approx(100 / 3)


@pytest.mark.parametrize("name", M.METRIC_NAMES)
def test_evaluate_load_bundled_scripts_offline(name, tmp_path):
    metric = evaluate.load(module_path(name), keep_in_memory=True, cache_dir=str(tmp_path))
    assert isinstance(metric, M.evaluate_modules.METRIC_CLASSES[name])
    if name in ("grec", "rec"):
        gt = {"grec": {"gt_boxes": [[A], []], "gt_no_target": [False, True]}, "rec": {"gt_box": [A, A]}}[name]
        metric.add_batch(pred_boxes=[[A], [B]], pred_scores=[[0.9], [0.3]], **gt)
        result = metric.compute(resolution="480x480")
        key = "Pr@(F1=1, IoU>=0.5)" if name == "grec" else "Precision@0.5"
        assert result[key] == (100.0 if name == "grec" else 50.0)
    else:
        metric.add_records(_mask_records())
        result = metric.compute(resolution="480x480")
        function = getattr(M, f"{name}_metrics")
        assert result == function(_mask_records(), resolution="480x480")
    assert result["resolution"] == "480x480" and result["definition"]


def test_module_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown metric 'miou'"):
        module_path("miou")
