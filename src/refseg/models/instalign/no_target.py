"""No-target predictor (InstAlign Sec. 3.6, eq. 10-12; Table 3c).

* eq. 10: ``Q_global = sum_i p_i Q_K^i`` with ``p_i = sigmoid(score logit)``;
* ``T_sen = Average(T_K)`` over the real (non-padding) tokens;
* eq. 11: ``Q_nt = Concat(Q_global, T_sen)``; eq. 12: ``p_nt = MLP(Q_nt)``.

The input is a config switch: ``"global_and_sentence"`` (eq. 11), ``"global"`` (``Q_global``),
``"sentence"`` (``T_sen``) or ``"mean_queries"`` (the plain average of the queries used by ReLA / LQMFormer).
The output is a logit whose sigmoid is the probability that nothing is referred to.
"""

from __future__ import annotations

import torch
from torch import nn

from ...modeling.mlp import MLP


def sentence_feature(text_features: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
    """``T_sen`` ``(B, C)``: the mean of ``text_features`` ``(B, L, C)`` over tokens where ``text_mask`` is 1."""
    if text_mask is None:
        return text_features.mean(dim=1)
    weights = text_mask.to(text_features.dtype)[..., None]
    return (text_features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class NoTargetPredictor(nn.Module):
    """MLP on ``Q_nt`` (eq. 12) with the input chosen by ``input_type`` (eq. 10-11).

    Args:
        hidden_dim: channels ``C`` of queries and text features.
        input_type: one of ``NO_TARGET_INPUT`` (``configuration_instalign``).
    """

    def __init__(self, hidden_dim: int, input_type: str = "global_and_sentence") -> None:
        super().__init__()
        self.input_type = input_type
        in_dim = 2 * hidden_dim if input_type == "global_and_sentence" else hidden_dim
        self.mlp = MLP(in_dim, hidden_dim, 1, num_layers=2)

    def build_input(
        self,
        queries: torch.Tensor,
        score_logits: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Q_nt`` ``(B, C or 2C)`` from ``Q_K`` ``(B, N, C)``, score logits ``(B, N)``, ``T_K`` ``(B, L, C)``."""
        if self.input_type == "mean_queries":
            return queries.mean(dim=1)
        q_global = torch.einsum("bn,bnc->bc", score_logits.sigmoid(), queries)  # eq. 10
        if self.input_type == "global":
            return q_global
        t_sen = sentence_feature(text_features, text_mask)
        if self.input_type == "sentence":
            return t_sen
        return torch.cat([q_global, t_sen], dim=-1)  # eq. 11

    def forward(
        self,
        queries: torch.Tensor,
        score_logits: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """No-target logits ``(B,)`` (eq. 12)."""
        return self.mlp(self.build_input(queries, score_logits, text_features, text_mask)).squeeze(-1)
