"""Mask losses of Mask2Former (arXiv 2112.01527 Sec. 3.3 / App. A), used by InstAlign's L_mask (eq. 6-7).

Both take mask logits and {0, 1} (or soft) targets of the same shape ``(K, ...)``: every mask is flattened,
the loss is averaged over its pixels (or sampled points), summed over masks and divided by ``num_masks``
(the number of ground-truth masks in the batch, averaged over processes in distributed training).
:func:`foreground_dice_loss` averages over the samples, or under an active
:class:`~refseg.modeling.loss_normalizer.LossNormalizer` divides by the step's global ``num_samples`` share.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .loss_normalizer import active_loss_normalizer


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float | torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(logits)``, summed / ``num_masks``.

    Returns a zero scalar (connected to ``logits``) when there are no masks.
    """
    if logits.shape[0] == 0:  # logits and targets (K, ...); num_masks > 0 when K > 0
        return logits.sum() * 0.0
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(
    logits: torch.Tensor, targets: torch.Tensor, num_masks: float | torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over each mask's pixels, summed over masks / ``num_masks``.

    Returns a zero scalar (connected to ``logits``) when there are no masks.
    """
    if logits.shape[0] == 0:  # logits and targets (K, ...); num_masks > 0 when K > 0
        return logits.sum() * 0.0
    logits = logits.flatten(1)
    targets = targets.flatten(1).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def foreground_dice_loss(
    foreground_logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Dice loss of one foreground map per sample, averaged over the batch (not part of any paper's loss).

    ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` per sample with ``p = sigmoid(foreground_logits)``, the same
    formula as :func:`dice_loss` (Mask2Former's), then the mean over the ``B`` samples; an empty target (a
    no-target sample) gives ``|p| / (|p| + 1)``, which pushes its foreground towards zero. The one-mask models
    (presence & plurality, METRIS) can add it to their cross-entropy (``lambda_dice``): the Dice term does not
    scale with the share of foreground pixels, so a model cannot lower it by predicting all background.

    Args:
        foreground_logits: ``(B, H, W)`` foreground logits (``logit_fg - logit_bg`` for a 2-class head).
        targets: ``(B, H, W)`` in {0, 1}.
        valid: optional ``(B, H, W)``, 0 where pixels count for neither ``p`` nor ``t`` (letterbox padding).
    """
    probs = foreground_logits.sigmoid().flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    if valid is not None:
        keep = valid.flatten(1).to(probs.dtype)
        probs, targets = probs * keep, targets * keep
    loss = 1 - (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)
    normalizer = active_loss_normalizer()
    if normalizer is None:
        return loss.mean()
    return loss.sum() / normalizer.denominator({"num_samples": 1.0})
