"""Mask NMS of the instance list (refseg.modeling.instance_nms), on hand-computed masks (issue 24)."""

from __future__ import annotations

import math

import pytest
import torch

from refseg.modeling import instance_nms
from refseg.modeling.instance_nms import (
    check_nms_threshold,
    mask_iou_matrix,
    mask_nms,
    suppress_duplicate_instances,
)


def rect(x0: int, x1: int, y0: int = 0, y1: int = 4, size: tuple[int, int] = (8, 8)) -> torch.Tensor:
    m = torch.zeros(size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


# A: 4x4 at x 0..4 (16 px); B: the same shifted one pixel right: intersection 12, union 20 -> IoU 0.6
A, B = rect(0, 4), rect(1, 5)
# nested: a 2x2 (4 px) inside A: IoU 4 / 16 = 0.25
SMALL = rect(1, 3, 1, 3)
# disjoint from A
FAR = rect(5, 8, 5, 8)


def test_iou_matrix_is_exact_on_hand_counted_masks():
    iou = mask_iou_matrix(torch.stack([A, B, SMALL, FAR, torch.zeros(8, 8, dtype=torch.bool)]))
    assert iou.dtype == torch.float64 and iou.shape == (5, 5)
    assert iou[0, 1] == iou[1, 0] == 12 / 20
    assert iou[0, 2] == 4 / 16
    assert iou[1, 2] == 4 / 16  # SMALL (columns 1-2, rows 1-2) lies inside B too
    assert iou[0, 3] == 0 and iou[2, 3] == 0
    assert iou[0, 0] == iou[3, 3] == 1
    assert iou[4, 4] == 0 and (iou[4] == 0).all()  # an empty mask overlaps nothing, itself included


def test_iou_matrix_in_pixel_chunks_equals_one_pass(monkeypatch):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 13, 11, generator=g) > 0.5
    whole = mask_iou_matrix(masks)
    monkeypatch.setattr(instance_nms, "_CHUNK_PIXELS", 7)  # 143 pixels in 21 chunks, the last one short
    assert torch.equal(mask_iou_matrix(masks), whole)
    flat = masks.reshape(6, -1).double()
    inter = flat @ flat.T
    area = flat.sum(1)
    assert torch.allclose(whole, inter / (area[:, None] + area[None] - inter))


def test_overlapping_masks_the_lower_score_is_dropped_above_the_threshold():
    masks, scores = torch.stack([B, A]), torch.tensor([0.8, 0.9])  # IoU 0.6; A scores higher
    assert mask_nms(masks, scores, 0.5).tolist() == [1]
    assert mask_nms(masks, scores, 0.59).tolist() == [1]
    assert mask_nms(masks, scores, 0.6).tolist() == [1, 0]  # "exceeds": an IoU equal to it is kept
    assert mask_nms(masks, scores, 0.7).tolist() == [1, 0]


def test_nested_masks_iou_is_the_small_area_over_the_large_one():
    masks = torch.stack([A, SMALL])  # IoU 0.25
    assert mask_nms(masks, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert mask_nms(masks, torch.tensor([0.9, 0.8]), 0.2).tolist() == [0]
    # the small one scoring higher suppresses the large one
    assert mask_nms(masks, torch.tensor([0.7, 0.8]), 0.2).tolist() == [1]


def test_disjoint_masks_are_all_kept_even_at_threshold_zero():
    masks = torch.stack([A, FAR, SMALL])
    # A and SMALL overlap (0.25) -> at 0 the lower one goes; FAR touches nothing
    assert mask_nms(torch.stack([A, FAR]), torch.tensor([0.6, 0.9]), 0.0).tolist() == [1, 0]
    assert mask_nms(masks, torch.tensor([0.6, 0.9, 0.5]), 0.0).tolist() == [1, 0]


def test_ties_keep_the_lower_index():
    masks = torch.stack([A, A.clone(), FAR])
    assert mask_nms(masks, torch.tensor([0.7, 0.7, 0.7]), 0.5).tolist() == [0, 2]
    assert mask_nms(torch.stack([FAR, A, A.clone()]), torch.tensor([0.7, 0.7, 0.7]), 0.5).tolist() == [0, 1]


def test_a_suppressed_instance_suppresses_nothing():
    # 1-pixel-high strips: P = x 0..4, Q = x 1..5, R = x 2..6; P-Q and Q-R IoU 0.6, P-R 2 / 6
    p, q, r = (rect(x, x + 4, 0, 1) for x in (0, 1, 2))
    keep = mask_nms(torch.stack([r, q, p]), torch.tensor([0.7, 0.8, 0.9]), 0.5)
    assert keep.tolist() == [2, 0]  # P kept, Q dropped by P, R kept (only Q overlapped it enough)


def test_off_keeps_everything_in_decreasing_score_order():
    masks, scores = torch.stack([A, A.clone(), B]), torch.tensor([0.5, 0.9, 0.7])
    for off in (None, 1.0):
        assert mask_nms(masks, scores, off).tolist() == [1, 2, 0]
    assert mask_nms(torch.zeros(0, 8, 8, dtype=torch.bool), torch.zeros(0), 0.5).tolist() == []


def test_suppress_duplicate_instances_on_contract_dicts():
    insts = [
        {"mask": A, "box": torch.tensor([0.0, 0.0, 4.0, 4.0]), "score": 0.9},
        {"mask": B, "box": torch.tensor([1.0, 0.0, 5.0, 4.0]), "score": 0.8},
        {"mask": FAR, "box": torch.tensor([5.0, 5.0, 8.0, 8.0]), "score": 0.6},
    ]
    kept = suppress_duplicate_instances(insts, 0.5)
    assert [i["score"] for i in kept] == [0.9, 0.6] and kept[0] is insts[0]
    assert suppress_duplicate_instances(insts, None) == insts
    assert suppress_duplicate_instances(insts, 1.0) == insts
    assert suppress_duplicate_instances([], 0.5) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 1.5, True, "0.5"])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="instance_nms_threshold"):
        check_nms_threshold(bad)
