"""No-target classifier for gRefCOCO (METRIS App. A: "we used a no-target classifier (Liu et al., 2023a)").

ReLA's classifier is a two-way MLP trained with a weighted cross-entropy. METRIS has no region queries, so
the paper does not say what it reads; we feed it the global average of the last decoder map (stride 4),
which has attended to the whole guidance set at every stage.
"""

from __future__ import annotations

import torch
from torch import nn


class NoTargetClassifier(nn.Module):
    """MLP ``dim -> hidden_dim -> 2`` on the pooled decoder map; logits ordered (target, no-target).

    Args:
        dim: channels of the decoder map.
        hidden_dim: hidden width of the MLP.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2))

    def forward(self, decoder_features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> two-way logits (B, 2)."""
        return self.mlp(decoder_features.mean(dim=(2, 3)))
