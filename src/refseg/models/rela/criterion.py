"""ReLA's training objective (Liu, Ding, Jiang, CVPR 2023, Sec. 3.3), with the released code's weights.

``L = lambda_mask * (CE_w(M, Y) + lambda_minimap * CE_w(minimap, Y_mm) + lambda_no_target * CE_w(nt, E))``:

* ``M``: the target mask logits ``(B, 2, h, w)`` bilinearly upsampled to the label size, ``Y`` the union of
  the referred instances;
* ``Y_mm``: the minimap target, ``Y`` bilinearly resized to ``sqrt(P) x sqrt(P)`` and truncated to an integer,
  so a cell is 1 only where the sampled pixels are all foreground (the released code's rule);
* ``E``: 1 for a no-target sample;
* ``CE_w``: class-weighted cross-entropy (``w = (0.9, 1.1)``), the weighted mean.

Only the last layer's outputs enter (no deep supervision, no matching), as released. Under an active
:class:`~refseg.modeling.loss_normalizer.LossNormalizer` each term divides by the step's global class-weight
sums (:func:`loss_counts`), so any world size and accumulation give the full batch's gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.loss_normalizer import active_loss_normalizer, class_weighted


def rela_targets(
    mask_labels: list[torch.Tensor], minimap_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Y, Y_mm, E)`` from per-sample instance masks ``(n_b, H, W)``: the union ``(B, H, W)`` long, the
    minimap target ``(B, minimap_size ** 2)`` long and the no-target label ``(B,)`` long (1 = nothing referred)."""
    unions = [
        masks.amax(dim=0) > 0.5 if masks.shape[0] else masks.new_zeros(masks.shape[1:], dtype=torch.bool)
        for masks in mask_labels
    ]
    union = torch.stack(unions)
    minimap = F.interpolate(
        union[:, None].float(), size=(minimap_size, minimap_size), mode="bilinear", align_corners=False
    )
    empty = (~union.flatten(1).any(dim=1)).long()
    return union.long(), minimap.flatten(1).long(), empty


def loss_counts(mask_labels: list[torch.Tensor], minimap_size: int) -> dict[str, float]:
    """The counts the criterion divides by under a loss normaliser: pixels, foreground pixels, minimap cells,
    foreground cells, samples and no-target samples."""
    union, minimap, empty = rela_targets(mask_labels, minimap_size)
    return {
        "num_pixels": float(union.numel()),
        "num_foreground_pixels": float(union.sum()),
        "num_cells": float(minimap.numel()),
        "num_foreground_cells": float(minimap.sum()),
        "num_samples": float(empty.numel()),
        "num_no_target": float(empty.sum()),
    }


class ReLACriterion(nn.Module):
    """The weighted sum of the three class-weighted cross-entropies of Sec. 3.3.

    Args:
        lambda_mask: weight of the whole sum (5.0 as released).
        lambda_minimap, lambda_no_target: weights of the minimap and no-target terms (0.1 each).
        class_weights: the weights of classes 0 and 1 in every term (0.9, 1.1).
        minimap_size: side of the minimap grid (10).
    """

    def __init__(
        self,
        lambda_mask: float = 5.0,
        lambda_minimap: float = 0.1,
        lambda_no_target: float = 0.1,
        class_weights: tuple[float, float] = (0.9, 1.1),
        minimap_size: int = 10,
    ) -> None:
        super().__init__()
        self.lambda_mask, self.lambda_minimap, self.lambda_no_target = (
            lambda_mask,
            lambda_minimap,
            lambda_no_target,
        )
        self.register_buffer("class_weights", torch.tensor(class_weights), persistent=False)
        self.minimap_size = minimap_size

    def _cross_entropy(
        self, logits: torch.Tensor, target: torch.Tensor, total: str, positive: str
    ) -> torch.Tensor:
        weights = self.class_weights.to(logits.dtype)
        normalizer = active_loss_normalizer()
        if normalizer is None:
            return F.cross_entropy(logits, target, weight=weights)
        denominator = normalizer.denominator(class_weighted(total, positive, self.class_weights.tolist()))
        return F.cross_entropy(logits, target, weight=weights, reduction="sum") / denominator

    def forward(
        self,
        target_mask_logits: torch.Tensor,
        minimap_logits: torch.Tensor,
        no_target_logits: torch.Tensor,
        mask_labels: list[torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its unweighted terms.

        Args:
            target_mask_logits: ``(B, 2, h, w)`` at any resolution (upsampled to the labels').
            minimap_logits: ``(B, P, 2)``; no_target_logits: ``(B, 2)`` (index 1 = no target).
            mask_labels: ``B`` float tensors ``(n_b, H, W)``, one mask per referred instance.
        """
        union, minimap, empty = rela_targets(mask_labels, self.minimap_size)
        logits = F.interpolate(
            target_mask_logits, size=union.shape[-2:], mode="bilinear", align_corners=False
        )
        loss_dict = {
            "loss_mask": self._cross_entropy(logits, union, "num_pixels", "num_foreground_pixels"),
            "loss_minimap": self._cross_entropy(
                minimap_logits.transpose(1, 2), minimap, "num_cells", "num_foreground_cells"
            ),
            "loss_no_target": self._cross_entropy(no_target_logits, empty, "num_samples", "num_no_target"),
        }
        loss = self.lambda_mask * (
            loss_dict["loss_mask"]
            + self.lambda_minimap * loss_dict["loss_minimap"]
            + self.lambda_no_target * loss_dict["loss_no_target"]
        )
        return loss, loss_dict


__all__ = ["ReLACriterion", "loss_counts", "rela_targets"]
