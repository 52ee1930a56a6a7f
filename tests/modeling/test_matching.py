import itertools
import math

import pytest
import torch

from refseg.modeling.losses import dice_loss, sigmoid_ce_loss
from refseg.modeling.matching import hungarian_matcher, pairwise_dice_cost, pairwise_sigmoid_ce_cost


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


def test_hungarian_non_finite_cost_raises():
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
