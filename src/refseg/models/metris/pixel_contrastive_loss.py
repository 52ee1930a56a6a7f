"""Pixel contrastive loss with a learnable temperature (METRIS eq. 4).

``L_cl = -log sigma(s_z / tau)`` on the relevant pixels ``Z+`` and ``-log(1 - sigma(s_z / tau))`` on the
irrelevant pixels ``Z-``, where ``s`` is the [CLS] row of the relevance map ``S_c`` (eq. 2), i.e. a binary
cross-entropy on the logits ``s / tau``. The paper does not say at which resolution or how the pixels are
averaged; we upsample ``s / tau`` bilinearly (``align_corners=True``) from the stride-32 grid to the
ground-truth size and take the mean over all pixels, the form of the authors' earlier code (CrossVLT), so the
loss is defined at the same pixels as the mask loss. A no-target sample has only irrelevant pixels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PixelContrastiveLoss(nn.Module):
    """Eq. 4, holding the learnable temperature ``tau``.

    Args:
        tau_init: initial ``tau``.
        tau_min: ``tau`` is clamped to at least this value (a guard against division by ~0).
    """

    def __init__(self, tau_init: float = 1.0, tau_min: float = 0.01) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(float(tau_init)))
        self.tau_min = float(tau_min)

    def logits(self, global_relevance: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """``s / tau`` reshaped to the vision grid: (B, N) -> (B, h, w)."""
        tau = self.tau.clamp(min=self.tau_min)
        return (global_relevance / tau).reshape(global_relevance.shape[0], *grid_size)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, h, w) from :meth:`logits`, ``targets`` (B, H, W) in {0, 1} -> mean BCE (eq. 4)."""
        if tuple(logits.shape[-2:]) != tuple(targets.shape[-2:]):
            logits = F.interpolate(
                logits[:, None], size=targets.shape[-2:], mode="bilinear", align_corners=True
            )[:, 0]
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
