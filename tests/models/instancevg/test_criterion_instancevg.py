"""InstanceVG training objective: point-guided matching (eq. 5), DETR terms, eq. 7 and the switches."""

import math

import pytest
import torch
from torch.nn import functional as F

from refseg.models.instancevg.criterion import InstanceVGCriterion, InstanceVGTargets, PointGuidedMatcher


def test_point_cost_decides_between_identical_queries():
    # two queries with identical class and box predictions; only their prior points differ
    logits = torch.zeros(1, 2, 2)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    points = torch.tensor([[[0.9, 0.9], [0.3, 0.3]]])
    target = [torch.tensor([[0.25, 0.25, 0.1, 0.1]])]
    with_point = PointGuidedMatcher(1, 5, 2, 2)(logits, boxes, points, target)
    assert with_point[0][0].tolist() == [1]
    points = torch.tensor([[[0.3, 0.3], [0.9, 0.9]]])
    assert PointGuidedMatcher(1, 5, 2, 2)(logits, boxes, points, target)[0][0].tolist() == [0]


def test_cost_matrix_values():
    matcher = PointGuidedMatcher(1.0, 5.0, 2.0, 2.0)
    logits = torch.tensor([[2.0, 0.0]])
    box = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    target = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    point = torch.tensor([[0.6, 0.5]])
    prob = torch.softmax(logits, -1)[0, 0]
    giou = (0.2 * 0.2) / (0.2 * 0.4)  # nested boxes: IoU = area ratio, enclosing = union
    expected = 5 * 0.2 - prob + -2 * giou + 2 * 0.1
    assert matcher.cost_matrix(logits, box, point, target).item() == pytest.approx(float(expected), abs=1e-6)


def _criterion(**kwargs):
    return InstanceVGCriterion(PointGuidedMatcher(), **kwargs)


def _inputs(num_layers=2, batch=2, queries=3, size=8):
    torch.manual_seed(0)
    class_logits = [torch.randn(batch, queries, 2, requires_grad=True) for _ in range(num_layers)]
    boxes = [torch.rand(batch, queries, 4).mul(0.4).add(0.1).requires_grad_() for _ in range(num_layers)]
    points = torch.rand(batch, queries, 2)
    masks = torch.randn(batch, queries, size, size, requires_grad=True)
    semantic = torch.randn(batch, size, size, requires_grad=True)
    minimap = torch.rand(batch, 4, 4)
    nt = torch.randn(batch, 2, requires_grad=True)
    return class_logits, boxes, points, masks, semantic, minimap, nt


def _targets(size=8, empty_first=False):
    m0 = torch.zeros(2, size, size)
    m0[0, :4, :4] = 1
    m0[1, 4:, 4:] = 1
    b0 = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]])
    m1 = torch.zeros(0, size, size)
    b1 = torch.zeros(0, 4)
    masks, boxes = ([m1, m0], [b1, b0]) if empty_first else ([m0, m1], [b0, b1])
    return InstanceVGTargets(masks=masks, boxes=boxes)


def test_detr_terms_and_unweighted_aux_layers():
    inputs = _inputs()
    targets = _targets()
    total, terms = _criterion()(*inputs, targets)
    assert set(terms) >= {
        "loss_class",
        "loss_bbox",
        "loss_giou",
        "loss_class_0",
        "loss_bbox_0",
        "loss_giou_0",
    }
    expected_det = 0.1 * (
        terms["loss_class"]
        + 5 * terms["loss_bbox"]
        + 2 * terms["loss_giou"]
        + terms["loss_class_0"]
        + terms["loss_bbox_0"]
        + terms["loss_giou_0"]
    )
    torch.testing.assert_close(terms["loss_det"], expected_det)
    _, weighted = _criterion(aux_loss_weighting="weighted")(*inputs, targets)
    expected_weighted = 0.1 * (
        weighted["loss_class"]
        + 5 * weighted["loss_bbox"]
        + 2 * weighted["loss_giou"]
        + weighted["loss_class_0"]
        + 5 * weighted["loss_bbox_0"]
        + 2 * weighted["loss_giou_0"]
    )
    torch.testing.assert_close(weighted["loss_det"], expected_weighted)
    torch.testing.assert_close(total, terms["loss_mask"] + terms["loss_det"] + terms["loss_no_target"])


def test_class_loss_is_weighted_cross_entropy_over_all_queries():
    class_logits, boxes, points, masks, semantic, minimap, nt = _inputs(num_layers=1)
    targets = _targets()
    criterion = _criterion()
    indices = criterion.matcher(class_logits[0], boxes[0], points, targets.boxes)
    _, terms = criterion([class_logits[0]], boxes, points, masks, semantic, minimap, nt, targets)
    target_classes = torch.ones(2, 3, dtype=torch.long)
    target_classes[0, indices[0][0]] = 0
    expected = F.cross_entropy(
        class_logits[0].transpose(1, 2), target_classes, weight=torch.tensor([1.0, 0.1])
    )
    torch.testing.assert_close(terms["loss_class"], expected)
    matched = boxes[0][0, indices[0][0]]
    expected_l1 = (matched - targets.boxes[0][indices[0][1]]).abs().sum() / 2
    torch.testing.assert_close(terms["loss_bbox"], expected_l1)


def _dice(logits, targets):
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def test_instance_mask_loss_positive_and_negative_terms():
    class_logits, boxes, points, masks, semantic, minimap, nt = _inputs(num_layers=1)
    targets = _targets()
    criterion = _criterion()
    indices = criterion.matcher(class_logits[0], boxes[0], points, targets.boxes)
    _, terms = criterion(class_logits, boxes, points, masks, semantic, minimap, nt, targets)
    pred, tgt = indices[0]
    pos = masks[0, pred]
    pos_t = targets.masks[0][tgt]
    expected_pos = _dice(pos, pos_t) + F.binary_cross_entropy_with_logits(pos, pos_t)
    torch.testing.assert_close(terms["loss_instance_positive"], expected_pos)
    unmatched = [q for q in range(3) if q not in pred.tolist()]
    neg = torch.cat([masks[0, unmatched], masks[1]])  # the no-target sample: every query is negative
    expected_neg = 0.2 * (
        _dice(neg, torch.zeros_like(neg)) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
    )
    torch.testing.assert_close(terms["loss_instance_negative"], expected_neg)
    _, no_neg = _criterion(negative_mask_weight=0.0)(
        class_logits, boxes, points, masks, semantic, minimap, nt, targets
    )
    assert "loss_instance_negative" not in no_neg
    torch.testing.assert_close(no_neg["loss_mask"], terms["loss_mask"] - terms["loss_instance_negative"])


def test_global_minimap_and_no_target_terms():
    class_logits, boxes, points, masks, semantic, minimap, nt = _inputs(num_layers=1)
    targets = _targets()
    _, terms = _criterion()(class_logits, boxes, points, masks, semantic, minimap, nt, targets)
    union = torch.stack([targets.masks[0].amax(0), torch.zeros(8, 8)])
    expected = _dice(semantic, union) + F.binary_cross_entropy_with_logits(semantic, union)
    torch.testing.assert_close(terms["loss_global"], expected)
    small = F.interpolate(union[:, None], size=(4, 4), mode="nearest")[:, 0]
    expected_minimap = 0.1 * (_dice(minimap, small) + F.binary_cross_entropy_with_logits(minimap, small))
    torch.testing.assert_close(terms["loss_minimap"], expected_minimap)
    expected_nt = 0.2 * F.cross_entropy(nt, torch.tensor([0, 1]), weight=torch.tensor([0.9, 1.1]))
    torch.testing.assert_close(terms["loss_no_target"], expected_nt)
    _, off = _criterion(minimap_loss_weight=0.0)(
        class_logits, boxes, points, masks, semantic, minimap, nt, targets
    )
    assert float(off["loss_minimap"]) == 0.0


def test_all_no_target_batch_gives_a_finite_loss_with_gradients():
    class_logits, boxes, points, masks, semantic, minimap, nt = _inputs(num_layers=2)
    empty = InstanceVGTargets(masks=[torch.zeros(0, 8, 8)] * 2, boxes=[torch.zeros(0, 4)] * 2)
    total, terms = _criterion()(class_logits, boxes, points, masks, semantic, minimap, nt, empty)
    assert math.isfinite(total.item())
    assert float(terms["loss_instance_positive"]) == 0.0 and float(terms["loss_bbox"]) == 0.0
    total.backward()
    assert masks.grad is not None and torch.isfinite(masks.grad).all()
    expected_class = F.cross_entropy(class_logits[-1].transpose(1, 2), torch.ones(2, 3, dtype=torch.long))
    torch.testing.assert_close(terms["loss_class"], expected_class)
