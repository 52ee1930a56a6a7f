import math

import pytest
import torch

from refseg.modeling.losses import dice_loss, foreground_dice_loss, sigmoid_ce_loss

# two masks of two pixels: sigmoid(logits) = [[0.5, 0.75], [0.5, 0.5]]
LOGITS = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
TARGETS = torch.tensor([[1.0, 0.0], [1.0, 1.0]])


def test_dice_loss_hand_computed():
    # mask 1: 1 - (2 * 0.5 + 1) / (1.25 + 1 + 1) = 5/13; mask 2: 1 - (2 * 1 + 1) / (1 + 2 + 1) = 1/4
    loss = dice_loss(LOGITS, TARGETS, num_masks=2)
    assert loss.item() == pytest.approx((5 / 13 + 1 / 4) / 2, abs=1e-6)
    # num_masks only normalises
    assert dice_loss(LOGITS, TARGETS, num_masks=1).item() == pytest.approx(5 / 13 + 1 / 4, abs=1e-6)


def test_sigmoid_ce_loss_hand_computed():
    # mask 1: mean(-ln 0.5, -ln 0.25) = 1.5 ln 2; mask 2: mean(-ln 0.5, -ln 0.5) = ln 2
    loss = sigmoid_ce_loss(LOGITS, TARGETS, num_masks=2)
    assert loss.item() == pytest.approx(2.5 * math.log(2) / 2, abs=1e-6)


def test_losses_flatten_spatial_dims_and_accept_tensor_num_masks():
    logits = LOGITS.view(2, 1, 2)
    targets = TARGETS.view(2, 1, 2)
    num = torch.tensor(2.0)
    assert torch.allclose(dice_loss(logits, targets, num), dice_loss(LOGITS, TARGETS, 2))
    assert torch.allclose(sigmoid_ce_loss(logits, targets, num), sigmoid_ce_loss(LOGITS, TARGETS, 2))


def test_perfect_prediction_has_near_zero_loss():
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = (targets * 2 - 1) * 30
    assert dice_loss(logits, targets, 1).item() < 1e-6
    assert sigmoid_ce_loss(logits, targets, 1).item() < 1e-6


def test_no_masks_gives_zero_connected_to_graph():
    logits = torch.zeros(0, 5, requires_grad=True)
    for fn in (dice_loss, sigmoid_ce_loss):
        loss = fn(logits, torch.zeros(0, 5), 0)
        assert loss.item() == 0.0
        loss.backward()


def test_foreground_dice_loss_hand_computed():
    # the two masks above as a batch of two 1x2 maps: the per-sample Dice is 5/13 and 1/4, averaged
    loss = foreground_dice_loss(LOGITS[:, None], TARGETS[:, None])
    assert loss.item() == pytest.approx((5 / 13 + 1 / 4) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(dice_loss(LOGITS, TARGETS, num_masks=2).item(), abs=1e-6)


def test_foreground_dice_loss_ignores_invalid_pixels_and_penalises_foreground_on_empty_targets():
    valid = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # sample 0 loses its pixel with p = 0.75, t = 0
    loss = foreground_dice_loss(LOGITS[:, None], TARGETS[:, None], valid)
    # sample 0: 1 - (2 * 0.5 + 1) / (0.5 + 1 + 1) = 1/5
    assert loss.item() == pytest.approx((1 / 5 + 1 / 4) / 2, abs=1e-6)
    # an empty target (no-target sample): 1 - 1 / (|p| + 1) with |p| = 0.5 + 0.75
    empty = foreground_dice_loss(LOGITS[:1, None], torch.zeros(1, 1, 2))
    assert empty.item() == pytest.approx(1 - 1 / 2.25, abs=1e-6)
