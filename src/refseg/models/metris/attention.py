"""The attention layer used throughout METRIS: multi-head attention + residual, then MLP + residual.

Eq. 6 and 7 of the paper write it as ``F_hat = MHCA(q, kv, m) + q``, ``F = MLP(F_hat) + F_hat``. The paper does
not say where the layer norms go; we normalise after each residual (post-norm, as the Transformer decoder
layers of its code lineage) because it keeps every output on the scale of its input without extra parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


class AttentionMLPLayer(GradientCheckpointingLayer):
    """``x = LN(MHA(q, kv) + q)``, ``out = LN(MLP(x) + x)`` with a ReLU MLP ``dim -> ffn_dim -> dim``.

    A ``GradientCheckpointingLayer``: ``gradient_checkpointing_enable()`` on the model recomputes it in the
    backward pass (the decoder stages, the linguistic enhancement and the visual expression extractor).

    Args:
        dim: channels of the queries (and of the output).
        kv_dim: channels of the keys / values (``None``: ``dim``, e.g. self-attention).
        num_heads: attention heads.
        ffn_dim: hidden width of the MLP.
        dropout: dropout on the attention weights and in the MLP.
    """

    def __init__(
        self, dim: int, kv_dim: int | None, num_heads: int, ffn_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.attention = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, kdim=kv_dim, vdim=kv_dim, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
            nn.Dropout(dropout),
        )
        self.mlp_norm = nn.LayerNorm(dim)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        blocked: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, Q, dim) to ``key_value`` (B, K, kv_dim).

        Args:
            blocked: optional bool (B, Q, K), True where query ``q`` must not see key ``k`` (the dynamic mask
                ``M = -inf`` entries of eq. 3); shared by every head.
            key_padding_mask: optional bool (B, K), True for padded keys.
            return_weights: also return the per-head attention weights (B, heads, Q, K).
        """
        attn_mask = None
        if blocked is not None:
            attn_mask = blocked.repeat_interleave(self.num_heads, dim=0)  # (B * heads, Q, K)
        attended, weights = self.attention(
            query,
            key_value,
            key_value,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=return_weights,
            average_attn_weights=False,
        )
        x = self.attention_norm(query + attended)
        return self.mlp_norm(x + self.mlp(x)), weights
