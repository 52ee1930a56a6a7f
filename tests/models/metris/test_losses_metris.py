"""METRIS losses: the pixel contrastive loss (eq. 4) and the mask / no-target losses on hand-computed cases."""

import math

import torch

from refseg.models.metris.criterion import no_target_loss, segmentation_loss
from refseg.models.metris.pixel_contrastive_loss import PixelContrastiveLoss


def _bce(logit: float, target: int) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -math.log(p) if target else -math.log(1 - p)


def test_eq4_on_a_2x2_map_hand_computed():
    loss_fn = PixelContrastiveLoss(tau_init=0.5)
    s = torch.tensor([[0.5, -0.5, 0.2, 0.0]])  # the [CLS] row of S_c, N = 4
    logits = loss_fn.logits(s, (2, 2))
    torch.testing.assert_close(logits, torch.tensor([[[1.0, -1.0], [0.4, 0.0]]]))
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # Z+ = {0, 3}, Z- = {1, 2}
    expected = (_bce(1.0, 1) + _bce(-1.0, 0) + _bce(0.4, 0) + _bce(0.0, 1)) / 4
    loss = loss_fn(logits, targets)
    assert abs(loss.item() - expected) < 1e-6
    loss.backward()
    assert loss_fn.tau.grad is not None and loss_fn.tau.grad.abs() > 0  # tau is learnable


def test_eq4_no_target_sample_has_only_irrelevant_pixels():
    loss_fn = PixelContrastiveLoss(tau_init=1.0)
    s = torch.tensor([[0.3, -0.1, 0.9, 0.0]])
    loss = loss_fn(loss_fn.logits(s, (2, 2)), torch.zeros(1, 2, 2))
    expected = sum(_bce(v, 0) for v in (0.3, -0.1, 0.9, 0.0)) / 4
    assert abs(loss.item() - expected) < 1e-6


def test_eq4_upsamples_the_grid_to_the_ground_truth_size():
    loss_fn = PixelContrastiveLoss(tau_init=1.0)
    s = torch.tensor([[0.0, 1.0]])  # a 1x2 grid; align_corners=True interpolates 0 -> 1 over 3 columns
    targets = torch.tensor([[[1.0, 0.0, 1.0]]])
    expected = (_bce(0.0, 1) + _bce(0.5, 0) + _bce(1.0, 1)) / 3
    assert abs(loss_fn(loss_fn.logits(s, (1, 2)), targets).item() - expected) < 1e-6


def test_tau_is_clamped():
    loss_fn = PixelContrastiveLoss(tau_init=1.0, tau_min=0.1)
    with torch.no_grad():
        loss_fn.tau.fill_(1e-5)
    torch.testing.assert_close(loss_fn.logits(torch.tensor([[0.5]]), (1, 1)), torch.tensor([[[5.0]]]))


def test_weighted_two_class_mask_loss_hand_computed():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = math.log(3.0)  # p(fg) = 3/4 at pixel 0, 1/2 at pixel 1
    targets = torch.tensor([[[1.0, 0.0]]])
    # weighted mean: (1.1 * -log(3/4) + 0.9 * -log(1/2)) / (1.1 + 0.9)
    expected = (1.1 * -math.log(0.75) + 0.9 * -math.log(0.5)) / 2.0
    loss = segmentation_loss(logits, targets, "ce", [0.9, 1.1])
    assert abs(loss.item() - expected) < 1e-6
    bce = segmentation_loss(torch.tensor([[[[0.0, 2.0]]]]), targets, "bce", [0.9, 1.1])
    assert abs(bce.item() - (_bce(0.0, 1) + _bce(2.0, 0)) / 2) < 1e-6


def test_mask_loss_is_computed_at_the_target_resolution():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[2.0, 2.0], [-2.0, -2.0]])
    targets = torch.zeros(1, 8, 8)
    targets[0, :4] = 1
    low = segmentation_loss(logits, targets[:, ::4, ::4], "ce", [1.0, 1.0])
    high = segmentation_loss(logits, targets, "ce", [1.0, 1.0])
    assert high.item() > low.item()  # the upsampled boundary rows are uncertain


def test_no_target_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(4.0)]])  # sample 1: p(no-target) = 4/5
    labels = torch.tensor([False, True])
    expected = (0.9 * -math.log(0.5) + 1.1 * -math.log(0.8)) / 2.0
    assert abs(no_target_loss(logits, labels, [0.9, 1.1]).item() - expected) < 1e-6
