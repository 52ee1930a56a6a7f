"""Phrase-Object Alignment (InstAlign Sec. 3.3.1, eq. 1-3).

For object queries ``Q`` (N x C) and text features ``T`` (L x C):

* eq. 1: ``R = softmax(Q T^T / sqrt(C))`` over the text tokens (padding tokens get zero weight);
* eq. 2: ``P = R T``, the phrase feature of each object;
* eq. 3: ``L_phrase(i) = 1 - cos(P_i, Q_i)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PhraseObjectAlignment(nn.Module):
    """Parameter-free computation of the phrase relevance ``R``, phrase features ``P`` and ``L_phrase``."""

    def forward(
        self,
        queries: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply eq. 1-3.

        Args:
            queries: ``Q_k`` ``(B, N, C)``.
            text_features: ``T_k`` ``(B, L, C)``.
            text_mask: ``(B, L)``, 1 (or True) for real tokens and 0 for padding; ``None`` means no padding.

        Returns:
            ``relevance`` R ``(B, N, L)`` (rows sum to 1), ``phrase_features`` P ``(B, N, C)`` and
            ``phrase_cost`` ``L_phrase`` ``(B, N)`` in ``[0, 2]``.
        """
        logits = queries @ text_features.transpose(1, 2) / math.sqrt(queries.shape[-1])  # (B, N, L)
        if text_mask is not None:
            logits = logits.masked_fill(~text_mask.bool()[:, None, :], torch.finfo(logits.dtype).min)
        relevance = logits.softmax(dim=-1)
        phrase_features = relevance @ text_features
        phrase_cost = 1.0 - nn.functional.cosine_similarity(phrase_features, queries, dim=-1, eps=1e-8)
        return relevance, phrase_features, phrase_cost
