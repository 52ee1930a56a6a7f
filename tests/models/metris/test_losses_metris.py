"""METRIS losses: the pixel contrastive loss (eq. 4) and the mask / no-target losses on hand-computed cases."""

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from refseg.data import synthetic_tokenizer
from refseg.modeling.losses import foreground_dice_loss
from refseg.models.metris import MetrisConfig, MetrisForReferringSegmentation
from refseg.models.metris.criterion import no_target_loss, segmentation_loss, upsample_logits
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


def test_dice_switch_adds_the_dice_term_hand_computed():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = math.log(3.0)  # p(fg) = 3/4 at pixel 0, 1/2 at pixel 1
    targets = torch.tensor([[[1.0, 0.0]]])
    ce = (1.1 * -math.log(0.75) + 0.9 * -math.log(0.5)) / 2.0
    dice = 1 - (2 * 0.75 + 1) / (1.25 + 1 + 1)  # 1 - 2.5 / 3.25 = 3/13
    assert segmentation_loss(logits, targets, "ce", [0.9, 1.1]).item() == pytest.approx(ce, abs=1e-6)
    assert segmentation_loss(logits, targets, "ce", [0.9, 1.1], 0.0).item() == pytest.approx(ce, abs=1e-6)
    with_dice = segmentation_loss(logits, targets, "ce", [0.9, 1.1], dice_weight=2.0)
    assert with_dice.item() == pytest.approx(ce + 2 * dice, abs=1e-6)
    # bce: the one channel is the foreground logit (p = 1/2, 0.8808)
    bce_logits = torch.tensor([[[[0.0, 2.0]]]])
    p1 = 1 / (1 + math.exp(-2.0))
    bce = (_bce(0.0, 1) + _bce(2.0, 0)) / 2
    bce_dice = 1 - (2 * 0.5 + 1) / (0.5 + p1 + 1 + 1)
    got = segmentation_loss(bce_logits, targets, "bce", [0.9, 1.1], dice_weight=1.0)
    assert got.item() == pytest.approx(bce + bce_dice, abs=1e-6)


def test_lambda_dice_defaults_to_the_papers_loss_and_reaches_the_model():
    assert MetrisConfig().lambda_dice == 0.0 and MetrisConfig.preset("paper").lambda_dice == 0.0
    assert MetrisConfig.preset("tiny").lambda_dice == 0.0
    with pytest.raises(StrictDataclassError, match="lambda_dice"):
        MetrisConfig.preset("tiny", lambda_dice=-1.0)
    torch.manual_seed(0)
    pixel_values, input_ids = torch.randn(2, 3, 64, 64), torch.randint(1, 50, (2, 6))
    labels = [torch.zeros(1, 64, 64), torch.zeros(0, 64, 64)]
    labels[0][0, 8:24, 16:40] = 1
    outs = []
    for weight in (0.0, 0.5):
        torch.manual_seed(1)
        model = MetrisForReferringSegmentation(MetrisConfig.preset("tiny", lambda_dice=weight)).eval()
        with torch.no_grad():
            outs.append(model(pixel_values=pixel_values, input_ids=input_ids, mask_labels=labels))
    off, on = outs
    targets = torch.stack([labels[0][0], labels[1].new_zeros(64, 64)])
    up = upsample_logits(off.mask_logits, (64, 64))
    dice = foreground_dice_loss(up[:, 1] - up[:, 0], targets)
    torch.testing.assert_close(on.loss_dict["loss_seg"], off.loss_dict["loss_seg"] + 0.5 * dice)
    torch.testing.assert_close(on.loss - off.loss, 2.0 * 0.5 * dice)  # lambda_seg = 2 scales it


def test_demo_preset_turns_the_dice_term_on_and_fits_in_10_mb():
    tokenizer = synthetic_tokenizer()  # what examples/train.py gives the demo model
    text = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    config = MetrisConfig.preset("demo", encoder_fusion="pwam", text_config=text)
    assert config.lambda_dice == 1.0 and MetrisConfig.preset("demo", lambda_dice=0.0).lambda_dice == 0.0
    assert config.ffn_dim == 192 and MetrisConfig.preset("paper").ffn_dim == 2048
    model = MetrisForReferringSegmentation(config)
    assert sum(p.numel() for p in model.parameters()) * 4 <= 10_000_000  # float32 bytes
