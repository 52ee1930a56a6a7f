"""Hungarian matching and Mask2Former's pairwise mask costs and point sampling.

Used for InstAlign's phrase-aligned matching (eq. 5-6): the caller builds a cost matrix per image
``(N predictions, M_b targets)`` from these pieces and :func:`hungarian_matcher` solves eq. 5 with
``scipy.optimize.linear_sum_assignment``. Point sampling follows Mask2Former (arXiv 2112.01527 Sec. 3.3,
"Improving training efficiency"): the matcher compares masks on ``num_points`` uniformly random points shared
by predictions and targets, the loss on points chosen by uncertainty (``-|logit|``) with some randomness;
``num_points=0`` uses whole masks instead.
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
        if cost.dim() != 2:
            raise ValueError(f"cost matrix {b} must be 2-D (N, M), got shape {tuple(cost.shape)}")
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
    pred_logits, targets = pred_logits.flatten(1), targets.flatten(1)
    if pred_logits.shape[1] != targets.shape[1]:
        raise ValueError(
            f"predictions and targets must have the same number of points, got {pred_logits.shape[1]} "
            f"and {targets.shape[1]}"
        )
    return pred_logits.float(), targets.float()


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


def point_sample(inputs: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bilinearly sample ``inputs`` ``(B, C, H, W)`` at ``point_coords`` ``(B, P, 2)`` in ``[0, 1]`` as ``(x, y)``.

    Returns ``(B, C, P)`` (detectron2's ``point_sample``; ``align_corners=False`` by default).
    """
    if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
        raise ValueError(f"point_coords must be (B, P, 2), got {tuple(point_coords.shape)}")
    kwargs.setdefault("align_corners", False)
    grid = 2.0 * point_coords.unsqueeze(2).to(inputs.dtype) - 1.0
    return F.grid_sample(inputs, grid, **kwargs).squeeze(3)


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Mask2Former's uncertainty ``-|logit|``: highest where the prediction is closest to 0.5."""
    return -logits.abs()


@torch.no_grad()
def uncertain_point_coords(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Points for the mask loss (PointRend ``get_uncertain_point_coords_with_randomness``).

    Draws ``oversample_ratio * num_points`` uniform points, keeps the ``importance_sample_ratio`` most
    uncertain fraction of ``num_points`` and fills the rest with fresh uniform points.

    Args:
        mask_logits: ``(K, 1, h, w)`` predicted mask logits.
    Returns:
        ``(K, num_points, 2)`` coordinates in ``[0, 1]``.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_masks = mask_logits.shape[0]
    device = mask_logits.device
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(num_masks, num_sampled, 2, generator=generator, device=device)
    uncertainties = calculate_uncertainty(point_sample(mask_logits, coords))  # (K, 1, S)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainties[:, 0, :], k=num_uncertain, dim=1).indices
    coords = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(num_masks, num_random, 2, generator=generator, device=device)
        coords = torch.cat([coords, extra], dim=1)
    return coords


def _resize_targets(targets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(M, H, W)`` masks to ``size``: area average when shrinking, bilinear otherwise."""
    if tuple(targets.shape[-2:]) == tuple(size):
        return targets
    shrink = targets.shape[-2] >= size[0] and targets.shape[-1] >= size[1]
    mode = "area" if shrink else "bilinear"
    kwargs = {} if shrink else {"align_corners": False}
    return F.interpolate(targets[:, None], size=size, mode=mode, **kwargs)[:, 0]


def _check_masks(pred_logits: torch.Tensor, targets: torch.Tensor) -> None:
    if pred_logits.dim() != 3 or targets.dim() != 3:
        raise ValueError(
            f"pred_logits and targets must be (N, h, w) and (M, H, W), got {tuple(pred_logits.shape)} "
            f"and {tuple(targets.shape)}"
        )


def sample_points_for_matching(
    pred_logits: torch.Tensor,
    targets: torch.Tensor,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepare one image's masks for the pairwise costs (Mask2Former matcher).

    Args:
        pred_logits: ``(N, h, w)`` predicted mask logits.
        targets: ``(M, H, W)`` target masks (any resolution).
        num_points: uniform random points shared by all masks; ``0`` compares whole masks at the prediction
            resolution (targets area-downsampled).
    Returns:
        ``(N, P)`` logits and ``(M, P)`` targets (float).
    """
    _check_masks(pred_logits, targets)
    targets = targets.to(pred_logits.dtype)
    if num_points == 0:
        return pred_logits.flatten(1), _resize_targets(targets, tuple(pred_logits.shape[-2:])).flatten(1)
    if num_points < 0:
        raise ValueError(f"num_points must be >= 0, got {num_points}")
    coords = torch.rand(1, num_points, 2, generator=generator, device=pred_logits.device)
    pred = point_sample(pred_logits[None], coords)[0]
    target = (
        point_sample(targets[None], coords)[0] if targets.shape[0] > 0 else targets.new_zeros(0, num_points)
    )
    return pred, target


def sample_points_for_loss(
    pred_logits: torch.Tensor,
    targets: torch.Tensor,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepare matched pairs for :func:`dice_loss` / :func:`sigmoid_ce_loss` (Mask2Former criterion).

    Args:
        pred_logits: ``(K, h, w)`` logits of the matched predictions.
        targets: ``(K, H, W)`` their targets.
        num_points: importance-sampled points per mask; ``0`` uses whole masks at the prediction resolution.
    Returns:
        ``(K, P)`` logits (differentiable) and ``(K, P)`` targets.
    """
    _check_masks(pred_logits, targets)
    if pred_logits.shape[0] != targets.shape[0]:
        raise ValueError(f"need one target per prediction, got {pred_logits.shape[0]} and {targets.shape[0]}")
    targets = targets.to(pred_logits.dtype)
    if num_points == 0 or pred_logits.shape[0] == 0:
        return pred_logits.flatten(1), _resize_targets(targets, tuple(pred_logits.shape[-2:])).flatten(1)
    if num_points < 0:
        raise ValueError(f"num_points must be >= 0, got {num_points}")
    coords = uncertain_point_coords(
        pred_logits[:, None].detach(), num_points, oversample_ratio, importance_sample_ratio, generator
    )
    with torch.no_grad():
        target = point_sample(targets[:, None], coords)[:, 0]
    pred = point_sample(pred_logits[:, None], coords)[:, 0]
    return pred, target


__all__ = [
    "hungarian_matcher",
    "pairwise_dice_cost",
    "pairwise_sigmoid_ce_cost",
    "point_sample",
    "calculate_uncertainty",
    "uncertain_point_coords",
    "sample_points_for_matching",
    "sample_points_for_loss",
]
