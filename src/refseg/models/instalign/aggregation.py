"""Instance aggregation into the merged referring mask (InstAlign Sec. 3.5, eq. 8; Table 3b).

* ``"aia_prelu"`` (eq. 8): ``M_merged = sigmoid(sum_i p_i * PReLU(s_i))`` with ``p_i = sigmoid(score logit)``
  in [0, 1] and a learned PReLU slope (one parameter, initialised to 0.25);
* ``"aia"``: the same without the PReLU, ``sigmoid(sum_i p_i * s_i)``;
* ``"threshold"``: hard selection, the union of the instances with ``p_i > threshold`` (the logit of a
  union is the pixel-wise maximum of the selected logits); when nothing is selected every pixel gets
  ``EMPTY_LOGIT``.

The module returns the logits (eq. 8 before the sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn

EMPTY_LOGIT = -10.0


class AdaptiveInstanceAggregation(nn.Module):
    """Merge ``N`` instance masks weighted by their relevance scores into one mask (eq. 8).

    Args:
        mode: ``"aia_prelu"``, ``"aia"`` or ``"threshold"``.
        threshold: score threshold of the ``"threshold"`` mode.
    """

    def __init__(self, mode: str = "aia_prelu", threshold: float = 0.5) -> None:
        super().__init__()
        self.mode = mode
        self.threshold = threshold
        self.activation = nn.PReLU(num_parameters=1, init=0.25) if mode == "aia_prelu" else nn.Identity()

    def forward(self, mask_logits: torch.Tensor, score_logits: torch.Tensor) -> torch.Tensor:
        """Merged-mask logits ``(B, h, w)`` from instance logits ``s`` ``(B, N, h, w)`` and scores ``(B, N)``."""
        scores = score_logits.sigmoid()  # (B, N)
        if self.mode == "threshold":
            selected = scores > self.threshold
            masked = mask_logits.masked_fill(~selected[:, :, None, None], torch.finfo(mask_logits.dtype).min)
            merged = masked.max(dim=1).values
            return torch.where(
                selected.any(dim=1)[:, None, None], merged, torch.full_like(merged, EMPTY_LOGIT)
            )
        return torch.einsum("bn,bnhw->bhw", scores, self.activation(mask_logits))
