"""Mask and no-target losses of METRIS (Sec. 3.3 and App. A); the pixel contrastive loss is eq. 4's module.

Sec. 3.3: "The final segmentation map is projected to a binary class mask by a linear projection layer. The
binary cross-entropy loss is used for the network training." The paper's code lineage (LAVT, CrossVLT)
projects to two classes and uses a cross-entropy weighted (0.9, 1.1) for (background, foreground) at the
input resolution; that is our default (``mask_loss="ce"``), and a one-channel BCE is the alternative. The
no-target classifier is trained as ReLA's: a cross-entropy weighted (0.9, 1.1) for (target, no-target).

Beyond the paper, ``dice_weight > 0`` (the config's ``lambda_dice``) adds a Dice loss of the foreground
probability (``refseg.modeling.losses.foreground_dice_loss``) to the mask loss; 0, the default, is the paper's
loss (docs/demo_model.md: it helps a small model trained from scratch leave the all-background start).

Under an active :class:`~refseg.modeling.loss_normalizer.LossNormalizer` (``train.py``) the weighted
cross-entropies divide by the step's global class-weight sums and the means by its global pixel and sample
counts (:func:`loss_counts`), so any world size and accumulation give the full batch's gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...modeling.loss_normalizer import active_loss_normalizer, class_weighted
from ...modeling.losses import foreground_dice_loss


def loss_counts(mask_labels: list[torch.Tensor]) -> dict[str, float]:
    """The counts the losses divide by, from ``B`` instance-mask tensors ``(n_b, H, W)`` at the input size.

    ``num_samples``, ``num_empty`` (no-target samples), ``num_pixels`` (``B H W``) and
    ``num_foreground_pixels`` (pixels of the union of the instances, ``> 0.5`` as the model's targets).
    """
    foreground = sum(int((m.amax(dim=0) > 0.5).sum()) if len(m) else 0 for m in mask_labels)
    return {
        "num_samples": float(len(mask_labels)),
        "num_empty": float(sum(len(m) == 0 for m in mask_labels)),
        "num_pixels": float(sum(m.shape[-2] * m.shape[-1] for m in mask_labels)),
        "num_foreground_pixels": float(foreground),
    }


def _normalized(loss_sum: torch.Tensor, coefficients: dict[str, float]) -> torch.Tensor:
    return loss_sum / active_loss_normalizer().denominator(coefficients)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=True``, as the code lineage) resize of (B, C, h, w) logits to ``size``."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def segmentation_loss(
    mask_logits: torch.Tensor,
    targets: torch.Tensor,
    mask_loss: str,
    class_weights: list[float],
    dice_weight: float = 0.0,
) -> torch.Tensor:
    """Mask loss at the target resolution.

    Args:
        mask_logits: (B, 2, h, w) class logits (``"ce"``) or (B, 1, h, w) foreground logits (``"bce"``).
        targets: (B, H, W) in {0, 1}, the union of the referred objects (all zero for no-target).
        mask_loss: ``"ce"`` (2-class cross-entropy weighted by ``class_weights``) or ``"bce"``.
        class_weights: (background, foreground) weights of ``"ce"``.
        dice_weight: weight of an added Dice term on the foreground probability (not in the paper; 0 = off).
    """
    logits = upsample_logits(mask_logits, tuple(targets.shape[-2:]))
    if mask_loss == "ce":
        weight = torch.tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if active_loss_normalizer() is None:
            loss = F.cross_entropy(logits, targets.long(), weight=weight)
        else:
            loss = F.cross_entropy(logits, targets.long(), weight=weight, reduction="sum")
            loss = _normalized(loss, class_weighted("num_pixels", "num_foreground_pixels", class_weights))
        foreground = logits[:, 1] - logits[:, 0]  # its sigmoid is the softmax foreground probability
    else:
        if active_loss_normalizer() is None:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], targets.to(logits.dtype))
        else:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], targets.to(logits.dtype), reduction="sum")
            loss = _normalized(loss, {"num_pixels": 1.0})
        foreground = logits[:, 0]
    if dice_weight > 0:
        loss = loss + dice_weight * foreground_dice_loss(foreground, targets)
    return loss


def no_target_loss(logits: torch.Tensor, no_target: torch.Tensor, class_weights: list[float]) -> torch.Tensor:
    """Weighted cross-entropy of the two-way (target, no-target) logits (B, 2) against bool labels (B,)."""
    weight = torch.tensor(class_weights, dtype=logits.dtype, device=logits.device)
    if active_loss_normalizer() is None:
        return F.cross_entropy(logits, no_target.long(), weight=weight)
    loss = F.cross_entropy(logits, no_target.long(), weight=weight, reduction="sum")
    return _normalized(loss, class_weighted("num_samples", "num_empty", class_weights))
