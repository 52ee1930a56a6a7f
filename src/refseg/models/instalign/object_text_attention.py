"""Bidirectional Object-Text Cross Attention (InstAlign Sec. 3.3, Fig. 3).

One attention layer updates both sides from a single affinity matrix, as in the bidirectional
vision-language attention of GLIP / VLT-style fusion the paper cites:

``A = (Q W_q)(T W_k)^T / sqrt(d)`` per head;
``Q <- LN(Q + W_o^Q softmax_L(A) (T W_v^T))``   (objects read the text; padding tokens masked),
``T <- LN(T + W_o^T softmax_N(A^T) (Q W_v^Q))`` (words read the objects).

Both updates use the inputs of the layer (``Q_{k-1}``, ``T_{k-1}``), i.e. they are simultaneous.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ObjectTextCrossAttention(nn.Module):
    """Bidirectional cross-attention between ``N`` object queries and ``L`` text tokens (post-norm residuals).

    Args:
        hidden_dim: channels ``C`` of queries and text features.
        num_heads: attention heads; ``hidden_dim`` must be divisible by it.
        dropout: dropout on the attention probabilities and the residual branches.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.query_proj = nn.Linear(hidden_dim, hidden_dim)
        self.text_key_proj = nn.Linear(hidden_dim, hidden_dim)
        self.text_value_proj = nn.Linear(hidden_dim, hidden_dim)
        self.query_value_proj = nn.Linear(hidden_dim, hidden_dim)
        self.query_out_proj = nn.Linear(hidden_dim, hidden_dim)
        self.text_out_proj = nn.Linear(hidden_dim, hidden_dim)
        self.query_norm = nn.LayerNorm(hidden_dim)
        self.text_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        queries: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return updated ``(queries (B, N, C), text_features (B, L, C))``.

        Args:
            queries: ``Q`` ``(B, N, C)``; ``query_pos`` (same shape) is added to form the attention keys/queries.
            text_features: ``T`` ``(B, L, C)``.
            text_mask: ``(B, L)``, 1 for real tokens, 0 for padding (padding is never attended to).
        """
        batch, num_queries, channels = queries.shape
        length = text_features.shape[1]
        anchor = queries if query_pos is None else queries + query_pos
        q = self._heads(self.query_proj(anchor))
        k = self._heads(self.text_key_proj(text_features))
        affinity = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, h, N, L)

        to_text = affinity
        if text_mask is not None:
            pad = ~text_mask.bool()[:, None, None, :]
            to_text = affinity.masked_fill(pad, torch.finfo(affinity.dtype).min)
        text_values = self._heads(self.text_value_proj(text_features))
        object_update = self.dropout(to_text.softmax(-1)) @ text_values  # (B, h, N, d)
        object_update = object_update.transpose(1, 2).reshape(batch, num_queries, channels)

        query_values = self._heads(self.query_value_proj(queries))
        text_update = self.dropout(affinity.transpose(-1, -2).softmax(-1)) @ query_values  # (B, h, L, d)
        text_update = text_update.transpose(1, 2).reshape(batch, length, channels)

        queries = self.query_norm(queries + self.dropout(self.query_out_proj(object_update)))
        text_features = self.text_norm(text_features + self.dropout(self.text_out_proj(text_update)))
        return queries, text_features
