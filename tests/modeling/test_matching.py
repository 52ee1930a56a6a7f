import itertools
import math

import pytest
import torch

from refseg.modeling.losses import dice_loss, sigmoid_ce_loss
from refseg.modeling.matching import (
    calculate_uncertainty,
    hungarian_matcher,
    pairwise_dice_cost,
    pairwise_sigmoid_ce_cost,
    point_sample,
    sample_points_for_loss,
    sample_points_for_matching,
    uncertain_point_coords,
)


def _brute_force(cost: torch.Tensor) -> float:
    n, m = cost.shape
    best = math.inf
    for rows in itertools.permutations(range(n), m):
        best = min(best, sum(cost[r, c].item() for c, r in enumerate(rows)))
    return best


def test_hungarian_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    costs = [torch.rand(5, m, generator=gen) for m in (1, 2, 3, 5)]
    for cost, (rows, cols) in zip(costs, hungarian_matcher(costs)):
        assert rows.dtype == torch.int64 and cols.dtype == torch.int64
        assert len(rows) == len(cols) == cost.shape[1]
        assert len(set(rows.tolist())) == len(rows) and sorted(cols.tolist()) == list(range(cost.shape[1]))
        assert cost[rows, cols].sum().item() == pytest.approx(_brute_force(cost), abs=1e-5)


def test_hungarian_known_assignment_and_empty_targets():
    cost = torch.tensor([[4.0, 1.0], [2.0, 0.0], [0.5, 3.0]])
    (rows, cols), (er, ec) = hungarian_matcher([cost, torch.zeros(3, 0)])
    assert rows.tolist() == [1, 2] and cols.tolist() == [1, 0]
    assert er.numel() == 0 and ec.numel() == 0


def test_hungarian_rectangular_more_targets_than_predictions():
    cost = torch.tensor([[1.0, 0.0, 5.0], [0.0, 3.0, 5.0]])
    rows, cols = hungarian_matcher([cost])[0]
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_hungarian_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        hungarian_matcher([torch.zeros(3)])
    with pytest.raises(ValueError, match="NaN"):
        hungarian_matcher([torch.tensor([[float("nan"), 1.0]])])


def test_pairwise_costs_equal_per_pair_losses():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 10, generator=gen)
    tgt = (torch.rand(3, 10, generator=gen) > 0.5).float()
    dice = pairwise_dice_cost(pred, tgt)
    ce = pairwise_sigmoid_ce_cost(pred, tgt)
    assert dice.shape == ce.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert dice[i, j].item() == pytest.approx(
                dice_loss(pred[i : i + 1], tgt[j : j + 1], 1).item(), abs=1e-6
            )
            assert ce[i, j].item() == pytest.approx(
                sigmoid_ce_loss(pred[i : i + 1], tgt[j : j + 1], 1).item(), abs=1e-6
            )


def test_pairwise_cost_point_mismatch_raises():
    with pytest.raises(ValueError, match="same number of points"):
        pairwise_dice_cost(torch.zeros(2, 4), torch.zeros(1, 5))


def test_point_sample_values():
    # 2x2 map; with align_corners=False pixel centres are at 0.25 and 0.75
    feat = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])
    out = point_sample(feat, coords)
    assert out.shape == (1, 1, 4)
    assert out[0, 0].tolist() == pytest.approx([1.0, 2.0, 3.0, 2.5])


def test_uncertain_points_prefer_boundary():
    # logits: zero (most uncertain) in the left half, large on the right half
    logits = torch.cat([torch.zeros(1, 1, 8, 4), torch.full((1, 1, 8, 4), 20.0)], dim=-1)
    gen = torch.Generator().manual_seed(0)
    coords = uncertain_point_coords(logits, num_points=40, importance_sample_ratio=1.0, generator=gen)
    assert coords.shape == (1, 40, 2)
    assert (coords[0, :, 0] < 0.5).float().mean() > 0.95
    assert torch.equal(calculate_uncertainty(torch.tensor([-2.0, 0.5])), torch.tensor([-2.0, -0.5]))


def test_sample_points_for_matching_and_loss_shapes():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(5, 6, 8, requires_grad=True)
    tgt = (torch.rand(2, 24, 32) > 0.5).float()
    p, t = sample_points_for_matching(pred, tgt, num_points=50, generator=gen)
    assert p.shape == (5, 50) and t.shape == (2, 50)
    p, t = sample_points_for_matching(pred, tgt, num_points=0)
    assert p.shape == (5, 48) and t.shape == (2, 48)
    # full masks: targets area-downsampled (each 4x4 block becomes its mean)
    assert torch.allclose(t[0, 0], tgt[0, :4, :4].mean())
    p, t = sample_points_for_loss(pred[:2], tgt, num_points=30, generator=gen)
    assert p.shape == t.shape == (2, 30)
    dice_loss(p, t, 2).backward()
    assert pred.grad is not None and pred.grad[:2].abs().sum() > 0 and pred.grad[2:].abs().sum() == 0
    p, t = sample_points_for_matching(pred, tgt[:0], num_points=50)
    assert t.shape == (0, 50)


def test_point_sampling_is_deterministic_with_generator():
    pred = torch.randn(3, 6, 8)
    tgt = (torch.rand(3, 24, 32) > 0.5).float()
    a = sample_points_for_loss(pred, tgt, 20, generator=torch.Generator().manual_seed(3))
    b = sample_points_for_loss(pred, tgt, 20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sampling_bad_input():
    with pytest.raises(ValueError, match="one target per prediction"):
        sample_points_for_loss(torch.zeros(2, 4, 4), torch.zeros(3, 4, 4), 8)
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        sample_points_for_matching(torch.zeros(2, 16), torch.zeros(3, 4, 4), 8)
