"""Enhanced linguistic expression tokens ``Q_L_hat`` (METRIS Sec. 3.2, first paragraph).

"The linguistic expression tokens are first enhanced by the cross-attention layers using the vision features
as key-value pairs": every token of ``Q_L`` (B, L, D) attends to the vision tokens ``F_v`` (B, N, D). The
paper gives neither the number nor the form of these layers; we use ``num_layers`` post-norm
cross-attention + MLP layers (one by default), the form of the extractor's own layers (eq. 6), so that every
attention layer of the model is the same block.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionMLPLayer


class LinguisticExpressionEnhancer(nn.Module):
    """``Q_L -> Q_L_hat``: language-to-vision cross-attention layers (Sec. 3.2).

    Each token is refined independently (there is no self-attention among the tokens), so padded tokens can
    change no other token.

    Args:
        dim: ``D``, channels of the tokens and of ``F_v``.
        num_layers: cross-attention layers.
        num_heads, ffn_dim, dropout: of each layer.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            AttentionMLPLayer(dim, dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )

    def forward(self, text_tokens: torch.Tensor, vision_tokens: torch.Tensor) -> torch.Tensor:
        """``Q_L`` (B, L, D), ``F_v`` (B, N, D) -> ``Q_L_hat`` (B, L, D)."""
        for layer in self.layers:
            text_tokens, _ = layer(text_tokens, vision_tokens)
        return text_tokens
