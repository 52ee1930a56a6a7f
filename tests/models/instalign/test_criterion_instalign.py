import math

import pytest
import torch
import torch.nn.functional as F

from refseg.models.instalign.criterion import InstAlignCriterion, PhraseAlignedMatcher, resize_masks


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def dice_plus_bce(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Hand formula of L_mask for one mask: 1 - (2 sum p t + 1) / (sum p + sum t + 1) + mean BCE."""
    p = torch.sigmoid(logits.flatten()).tolist()
    t = target.flatten().tolist()
    dice = 1 - (2 * sum(a * b for a, b in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
    bce = sum(-(b * math.log(a) + (1 - b) * math.log(1 - a)) for a, b in zip(p, t)) / len(p)
    return dice + bce


def test_cost_matrix_eq6():
    matcher = PhraseAlignedMatcher(lambda_score=2.0, lambda_mask=5.0, lambda_phrase=1.0)
    scores = torch.tensor([0.5, -1.0])
    masks = torch.tensor([[[3.0, -3.0]], [[-2.0, 1.0]]])  # (N=2, 1, 2)
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])  # (M=3, 1, 2)
    phrase = torch.tensor([0.2, 0.7])
    cost = matcher.cost_matrix(scores, masks, targets, phrase)
    assert cost.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            expected = (
                2 * softplus(-scores[i].item()) + 5 * dice_plus_bce(masks[i], targets[j]) + phrase[i].item()
            )
            assert cost[i, j].item() == pytest.approx(expected, rel=1e-5)


def test_matching_picks_expected_assignment():
    matcher = PhraseAlignedMatcher()
    masks = torch.full((1, 3, 4, 4), -8.0)
    masks[0, 0, :2] = 8.0  # prediction 0 covers the top half
    masks[0, 2, 2:] = 8.0  # prediction 2 covers the bottom half
    top, bottom = torch.zeros(4, 4), torch.zeros(4, 4)
    top[:2], bottom[2:] = 1.0, 1.0
    indices = matcher(torch.zeros(1, 3), masks, [torch.stack([bottom, top])], torch.zeros(1, 3))
    pred, tgt = indices[0]
    assert dict(zip(pred.tolist(), tgt.tolist())) == {0: 1, 2: 0}


def test_phrase_term_changes_the_assignment():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1.0
    masks = torch.full((1, 2, 4, 4), -8.0)
    masks[0, :, :2] = 8.0
    masks[0, 1, 0, 0] = 7.0  # prediction 1 is a hair less confident on the target: worse mask cost
    phrase = torch.tensor([[0.9, 0.1]])  # prediction 1 is far better aligned with a phrase
    standard = PhraseAlignedMatcher(lambda_phrase=0.0)(torch.zeros(1, 2), masks, [target], phrase)
    aligned = PhraseAlignedMatcher(lambda_phrase=1.0)(torch.zeros(1, 2), masks, [target], phrase)
    assert standard[0][0].tolist() == [0]
    assert aligned[0][0].tolist() == [1]


def test_instance_loss_eq7_matched_and_unmatched_terms():
    criterion = InstAlignCriterion("phrase_aligned")
    scores = torch.tensor([[1.0, -0.5, 2.0]])
    masks = torch.tensor([[[[2.0, -1.0]], [[0.0, 0.0]], [[-3.0, 1.0]]]])  # (1, 3, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    phrase = torch.tensor([[0.3, 0.6, 0.9]])
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    terms = criterion.instance_loss(scores, masks, [target], phrase, indices=indices)
    unmatched = (softplus(-0.5) + softplus(2.0)) / 3  # sum of BCE(p_i, 0) over unmatched / (B N)
    assert terms["loss_score_unmatched"].item() == pytest.approx(unmatched, rel=1e-5)
    mask_term = dice_plus_bce(masks[0, 0], target[0])
    expected = 2 * softplus(-1.0) + 5 * mask_term + 1 * 0.3 + unmatched
    assert terms["loss_mask"].item() == pytest.approx(mask_term, rel=1e-5)
    assert terms["loss_phrase"].item() == pytest.approx(0.3, rel=1e-5)
    assert terms["loss_inst"].item() == pytest.approx(expected, rel=1e-5)

    standard = InstAlignCriterion("standard").instance_loss(scores, masks, [target], phrase, indices=indices)
    assert standard["loss_phrase"].item() == 0.0
    assert standard["loss_inst"].item() == pytest.approx(expected - 0.3, rel=1e-5)


def test_instance_loss_without_targets_pushes_all_scores_down():
    criterion = InstAlignCriterion()
    scores = torch.tensor([[0.5, -1.0]], requires_grad=True)
    masks = torch.randn(1, 2, 3, 3, requires_grad=True)
    terms = criterion.instance_loss(scores, masks, [torch.zeros(0, 3, 3)], torch.zeros(1, 2))
    expected = (softplus(0.5) + softplus(-1.0)) / 2
    assert terms["loss_inst"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["loss_mask"].item() == 0.0
    terms["loss_inst"].backward()
    assert torch.all(scores.grad > 0)


def test_total_loss_eq13_and_targets():
    criterion = InstAlignCriterion("phrase_aligned")
    torch.manual_seed(0)
    prediction = {
        "score_logits": torch.randn(2, 3),
        "mask_logits": torch.randn(2, 3, 2, 2),
        "semantic_mask_logits": torch.randn(2, 2, 2),
        "phrase_cost": torch.rand(2, 3),
    }
    instance = torch.zeros(1, 8, 8)
    instance[0, :4, :4] = 1.0
    targets = [instance, torch.zeros(0, 8, 8)]  # image 1 is no-target
    no_target_logits = torch.tensor([0.3, -0.2])
    total, terms = criterion([prediction], no_target_logits, targets)

    merged_gt = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # area-downsampled union
    merged = sum(dice_plus_bce(prediction["semantic_mask_logits"][b], merged_gt[b]) for b in range(2)) / 2
    assert terms["loss_merged"].item() == pytest.approx(merged, rel=1e-5)
    nt = (softplus(0.3) + softplus(0.2)) / 2  # BCE(0.3, 0) = softplus(0.3), BCE(-0.2, 1) = softplus(0.2)
    assert terms["loss_nt"].item() == pytest.approx(nt, rel=1e-5)
    expected = 5 * terms["loss_merged"] + 1 * terms["loss_inst"] + 0.1 * terms["loss_nt"]
    torch.testing.assert_close(total, expected)
    assert terms["loss_aux"].item() == 0.0

    total_deep, terms_deep = criterion([prediction, prediction], no_target_logits, targets)
    torch.testing.assert_close(terms_deep["loss_aux"], 5 * terms["loss_merged"] + terms["loss_inst"])
    torch.testing.assert_close(total_deep, total + terms_deep["loss_aux"])

    none_total, none_terms = InstAlignCriterion("none")([prediction], no_target_logits, targets)
    assert "loss_inst" not in none_terms
    torch.testing.assert_close(none_total, 5 * terms["loss_merged"] + 0.1 * terms["loss_nt"])


def test_resize_masks_area_downsampling():
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :2] = 1.0
    masks[1, 0, 0] = 1.0
    out = resize_masks(masks, (2, 2))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.25, 0.0], [0.0, 0.0]]]))
    assert resize_masks(torch.zeros(0, 4, 4), (2, 2)).shape == (0, 2, 2)
    torch.testing.assert_close(F.interpolate(masks[:, None], size=(2, 2), mode="area")[:, 0], out)
