"""The optional Dice term of the presence & plurality pixel loss (beyond eq. 5), on hand-computed cases."""

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.models.presence_plurality.criterion import PresencePluralityCriterion

CE = (1.1 * -math.log(0.75) + 0.9 * -math.log(0.5)) / 2.0  # weighted CE of p(fg) = (3/4, 1/2), t = (1, 0)
DICE = 1 - (2 * 0.75 + 1) / (1.25 + 1 + 1)  # 3/13


def _case():
    mask_logits = torch.zeros(1, 2, 1, 2)
    mask_logits[0, 1, 0, 0] = math.log(3.0)
    presence, plurality = torch.zeros(1, 2), torch.zeros(1, 2)
    labels = [torch.tensor([[[1.0, 0.0]]])]
    return mask_logits, presence, plurality, labels


def test_default_pixel_loss_is_the_papers_weighted_cross_entropy():
    _, terms = PresencePluralityCriterion()(*_case())
    assert terms["loss_pixel"].item() == pytest.approx(CE, abs=1e-6)
    assert "loss_dice" not in terms


def test_lambda_dice_adds_the_dice_of_the_foreground_probability():
    loss, terms = PresencePluralityCriterion(lambda_dice=2.0)(*_case())
    assert terms["loss_pixel"].item() == pytest.approx(CE + 2 * DICE, abs=1e-6)
    expected = CE + 2 * DICE + 0.1 * terms["loss_presence"].item() + 0.01 * terms["loss_plurality"].item()
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_lambda_dice_leaves_padded_pixels_out():
    pixel_mask = torch.tensor([[[1.0, 0.0]]])  # pixel 1 is letterbox padding
    _, terms = PresencePluralityCriterion(lambda_dice=1.0)(*_case(), pixel_mask=pixel_mask)
    dice = 1 - (2 * 0.75 + 1) / (0.75 + 1 + 1)  # only pixel 0: 1/11
    assert terms["loss_pixel"].item() == pytest.approx(-math.log(0.75) + dice, abs=1e-6)


def test_lambda_dice_is_off_in_the_paper_config_and_reaches_the_criterion():
    assert PresencePluralityConfig().lambda_dice == 0.0
    assert PresencePluralityConfig.preset("paper").lambda_dice == 0.0
    with pytest.raises(StrictDataclassError, match="lambda_dice"):
        PresencePluralityConfig.preset("tiny", lambda_dice=-0.5)
    model = PresencePluralityForReferringSegmentation(PresencePluralityConfig.preset("tiny", lambda_dice=0.5))
    assert model.criterion.lambda_dice == 0.5
    assert (
        PresencePluralityForReferringSegmentation(
            PresencePluralityConfig.preset("tiny")
        ).criterion.lambda_dice
        == 0.0
    )


def test_only_the_demo_preset_turns_the_dice_term_on():
    assert PresencePluralityConfig.preset("demo").lambda_dice == 1.0
    assert PresencePluralityConfig.preset("tiny").lambda_dice == 0.0
    assert PresencePluralityConfig.preset("demo", lambda_dice=0.0).lambda_dice == 0.0
