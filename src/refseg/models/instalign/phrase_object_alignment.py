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
        if queries.dim() != 3 or text_features.dim() != 3:
            raise ValueError(
                f"queries and text_features must be (B, N, C) and (B, L, C), got "
                f"{tuple(queries.shape)} and {tuple(text_features.shape)}"
            )
        if queries.shape[0] != text_features.shape[0] or queries.shape[-1] != text_features.shape[-1]:
            raise ValueError(
                f"queries {tuple(queries.shape)} and text_features {tuple(text_features.shape)} must share B and C"
            )
        logits = queries @ text_features.transpose(1, 2) / math.sqrt(queries.shape[-1])
        if text_mask is not None:
            if text_mask.shape != text_features.shape[:2]:
                raise ValueError(
                    f"text_mask must be (B, L) = {tuple(text_features.shape[:2])}, got {tuple(text_mask.shape)}"
                )
            logits = logits.masked_fill(~text_mask.bool()[:, None, :], torch.finfo(logits.dtype).min)
        relevance = logits.softmax(dim=-1)
        phrase_features = relevance @ text_features
        phrase_cost = 1.0 - nn.functional.cosine_similarity(phrase_features, queries, dim=-1, eps=1e-8)
        return relevance, phrase_features, phrase_cost
