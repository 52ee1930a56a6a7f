"""Hungarian matching and Mask2Former's pairwise mask costs.

Used for InstAlign's phrase-aligned matching (eq. 5-6) and InstanceVG's point-guided matcher: the caller
builds a cost matrix per image ``(N predictions, M_b targets)`` and :func:`hungarian_matcher` solves eq. 5
with ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F


@torch.no_grad()
def hungarian_matcher(cost_matrices: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Minimum-cost one-to-one assignment for each image (eq. 5).

    Args:
        cost_matrices: one ``(N, M_b)`` cost matrix per image (predictions x targets).

    Returns:
        per image ``(pred_indices, target_indices)``, int64 tensors on CPU of length ``min(N, M_b)``, sorted
        by prediction index (``M_b = 0`` gives two empty tensors). With ``N < M_b`` only ``N`` targets are
        matched, as ``scipy.optimize.linear_sum_assignment`` does for rectangular matrices.
    """
    indices = []
    for b, cost in enumerate(cost_matrices):
        if cost.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            indices.append((empty, empty.clone()))
            continue
        cost = cost.detach().float().cpu()
        if not torch.isfinite(cost).all():
            raise ValueError(f"cost matrix {b} contains NaN or infinite values")
        rows, cols = linear_sum_assignment(cost.numpy())
        indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return indices


def _flat_pair(pred_logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pred_logits.flatten(1).float(), targets.flatten(1).float()  # (N, P), (M, P)


def pairwise_dice_cost(pred_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` dice loss between every prediction ``(N, P)`` (logits) and target ``(M, P)``."""
    pred_logits, targets = _flat_pair(pred_logits, targets)
    probs = pred_logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_ce_cost(pred_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` mean binary cross-entropy between every prediction ``(N, P)`` (logits) and target ``(M, P)``."""
    pred_logits, targets = _flat_pair(pred_logits, targets)
    num_points = pred_logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(pred_logits, torch.ones_like(pred_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred_logits, torch.zeros_like(pred_logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / num_points


__all__ = ["hungarian_matcher", "pairwise_dice_cost", "pairwise_sigmoid_ce_cost"]
