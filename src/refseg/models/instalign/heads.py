"""Prediction heads (InstAlign Sec. 3.4, "Prediction Heads", eq. 4).

From refined queries ``Q_k`` (B, N, C): a score head gives the relevance logits of ``p_hat`` (B, N), and a
mask-embedding MLP maps each query into the pixel-feature space so that ``s_hat = V_4 . Q^T`` (eq. 4) is a
dot product with the stride-4 mask features ``V_4`` (B, C_mask, H/4, W/4), as in Mask2Former.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...modeling.mlp import MLP


class InstancePredictionHeads(nn.Module):
    """Shared by every Phrase-Object Transformer block: LayerNorm, score head and mask embedding (eq. 4).

    Args:
        hidden_dim: query channels ``C``.
        mask_dim: channels of the mask features ``V_4``.
        text_conditioned_score: add a bilinear query-sentence term to the score logits,
            ``<W_q LN(Q_i), W_t T_sen> / sqrt(C)`` with ``T_sen`` the mean of the current text features ``T_k``
            (the sentence feature of Sec. 3.6). The paper only says "a score prediction head"; this option gives
            that head a direct query-text matching term (off by default, used by the demo preset).
    """

    def __init__(self, hidden_dim: int, mask_dim: int, text_conditioned_score: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.score_head = MLP(hidden_dim, hidden_dim, 1, num_layers=2)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, num_layers=3)
        self.score_query_proj = nn.Linear(hidden_dim, hidden_dim) if text_conditioned_score else None
        self.score_text_proj = nn.Linear(hidden_dim, hidden_dim) if text_conditioned_score else None

    def forward(
        self,
        queries: torch.Tensor,
        mask_features: torch.Tensor | None,
        sentence_feature: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return the normalised queries ``(B, N, C)``, score logits ``(B, N)`` and mask logits ``(B, N, h, w)``
        (``None`` when ``mask_features`` is ``None``). ``sentence_feature`` ``(B, C)`` is required when the head
        is text-conditioned and ignored otherwise."""
        normed = self.norm(queries)
        score_logits = self.score_head(normed).squeeze(-1)
        if self.score_query_proj is not None:  # sentence_feature T_sen (B, C)
            matching = self.score_query_proj(normed) * self.score_text_proj(sentence_feature)[:, None]
            score_logits = score_logits + matching.sum(-1) / math.sqrt(normed.shape[-1])
        if mask_features is None:
            return normed, score_logits, None
        mask_logits = torch.einsum("bnc,bchw->bnhw", self.mask_embed(normed), mask_features)  # eq. 4
        return normed, score_logits, mask_logits
