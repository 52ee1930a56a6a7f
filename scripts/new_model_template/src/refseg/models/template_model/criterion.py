"""TemplateModel's training objective. TODO(paper): the paper's loss (equation), with its weights.

The skeleton's loss: ``L = lambda_mask * BCE(M, Y) + lambda_no_target * BCE(n, E)``, where ``M`` are the mask
logits bilinearly upsampled to the label size, ``Y`` the union of the referred instances, ``n`` the no-target
logit and ``E`` 1 for a sample that refers to nothing. Each term is summed over the samples (the mask term
averages each sample's pixels first) and divided by the number of samples: the batch's own, or under an
active :class:`~refseg.modeling.loss_normalizer.LossNormalizer` the step's global share of ``num_samples``
(:func:`loss_counts`), so any number of processes and accumulation steps gives the full batch's gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.loss_normalizer import active_loss_normalizer


def template_model_targets(mask_labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Y, E)`` from per-sample instance masks ``(n_b, H, W)``: the union ``(B, H, W)`` float {0, 1} and the
    no-target label ``(B,)`` float (1 = nothing is referred to, ``n_b = 0``)."""
    union = torch.stack(
        [masks.amax(dim=0) if masks.shape[0] else masks.new_zeros(masks.shape[1:]) for masks in mask_labels]
    )
    no_target = torch.tensor([float(masks.shape[0] == 0) for masks in mask_labels], device=union.device)
    return (union > 0.5).float(), no_target


def loss_counts(mask_labels: list[torch.Tensor]) -> dict[str, float]:
    """The counts :class:`TemplateModelCriterion` divides by under a loss normaliser: the samples."""
    return {"num_samples": float(len(mask_labels))}


class TemplateModelCriterion(nn.Module):
    """The weighted sum of the mask and no-target cross-entropies.

    Args:
        lambda_mask: weight of the mask term.
        lambda_no_target: weight of the no-target term.
    """

    def __init__(self, lambda_mask: float, lambda_no_target: float) -> None:
        super().__init__()
        self.lambda_mask = lambda_mask
        self.lambda_no_target = lambda_no_target

    def forward(
        self, mask_logits: torch.Tensor, no_target_logits: torch.Tensor, mask_labels: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, loss_dict)`` from mask logits ``(B, h, w)``, no-target logits ``(B,)`` and the labels
        ``(n_b, H, W)``; ``loss_dict`` holds the unweighted terms ``loss_mask`` and ``loss_no_target``."""
        union, no_target = template_model_targets(mask_labels)
        logits = F.interpolate(
            mask_logits[:, None], size=union.shape[-2:], mode="bilinear", align_corners=False
        )
        per_sample = (
            F.binary_cross_entropy_with_logits(logits[:, 0], union, reduction="none").flatten(1).mean(1)
        )
        normalizer = active_loss_normalizer()
        num_samples = len(mask_labels) if normalizer is None else normalizer.denominator({"num_samples": 1.0})
        loss_mask = per_sample.sum() / num_samples
        loss_no_target = (
            F.binary_cross_entropy_with_logits(no_target_logits, no_target, reduction="sum") / num_samples
        )
        loss = self.lambda_mask * loss_mask + self.lambda_no_target * loss_no_target
        return loss, {"loss_mask": loss_mask, "loss_no_target": loss_no_target}


__all__ = ["TemplateModelCriterion", "loss_counts", "template_model_targets"]
