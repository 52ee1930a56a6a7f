"""The Instance Query Generator (IQG) of the Attention-based Point-prior Decoder (InstanceVG Sec. 3.2.1, Fig. 3).

1. Text filter (Algorithm 1): ``N_q`` of the projected text tokens ``F_t`` become the T2I queries.
2. T2I decoder: one post-norm transformer decoder layer whose cross-attention from the filtered tokens to the
   projected image tokens ``F_i`` gives the attention maps ``M_attn`` (eq. 1).
3. Attention minimap ``M_s``: the maps reduced over the valid filtered tokens.
4. Dynamic point selector (Algorithm 2): ``N_q`` prior points ``P_r`` that cover the high-response regions.
5. ``Q_instance = MLP(Concat(Q_selected, F_q))`` (eq. 2): the T2I decoder output of each filtered token
   concatenated with the image feature under its point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...modeling.mlp import MLP
from ...modeling.position_encoding import SinePositionEmbedding
from .feed_forward import FeedForward


def text_filter(
    text_features: torch.Tensor, text_padding_mask: torch.Tensor, num_queries: int, mode: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1: select ``N_q`` tokens of ``F_t`` ``(B, L, C)``; ``text_padding_mask`` is True at padding.

    ``mode="mean"`` (the released code) ranks tokens by the mean of their features, ``"l2_norm"`` (the paper's
    text) by their L2 norm. With ``V >= N_q`` valid tokens the top ``N_q`` (descending score) are taken and all
    are valid; otherwise the first ``N_q`` positions are taken (padding zeroed, right padding assumed) and only
    the first ``V`` are valid. ``mode="none"`` is the code's ablation without the filter: the top ``N_q`` values
    of each channel over all tokens (padding included, as the code does), all valid.

    Returns ``(selected (B, N_q, C), valid (B, N_q) bool)``.
    """
    batch, length, channels = text_features.shape
    valid_tokens = ~text_padding_mask
    masked = text_features * valid_tokens[..., None].to(text_features.dtype)
    if mode == "none":
        if length < num_queries:  # zero slots so that N_q values exist per channel
            pad = masked.new_zeros(batch, num_queries - length, channels)
            text_features = torch.cat([text_features, pad], dim=1)
        selected = torch.topk(text_features, num_queries, dim=1).values
        return selected, torch.ones(batch, num_queries, dtype=torch.bool, device=masked.device)
    # N_q zero slots so that positions 0..N_q-1 exist; they are padding, so never ranked nor valid. Computed for
    # the whole batch at once (no per-sample loop), so that torch.export can trace it with a dynamic batch.
    masked = torch.cat([masked, masked.new_zeros(batch, num_queries, channels)], dim=1)
    scores = masked.mean(-1) if mode == "mean" else masked.norm(dim=-1)
    counts = valid_tokens.sum(1)[:, None]  # (B, 1) valid tokens V, a prefix (right padding)
    positions = torch.arange(scores.shape[1], device=masked.device)
    ranked = torch.topk(scores.masked_fill(positions >= counts, float("-inf")), num_queries, dim=1).indices
    first = torch.arange(num_queries, device=masked.device).expand(batch, -1)
    enough = counts >= num_queries
    index = torch.where(enough, ranked, first)
    selected = torch.gather(masked, 1, index[..., None].expand(-1, -1, channels))
    return selected, enough | (first < counts)


class TextToImageDecoder(nn.Module):
    """One post-norm DETR decoder layer with a final LayerNorm: filtered text tokens attend to image tokens.

    The content starts at zero and the filtered tokens are the query position embeddings. Returns the decoded
    tokens and the head-averaged cross-attention maps ``M_attn`` (taken after attention dropout, as
    ``nn.MultiheadAttention`` returns them).
    """

    def __init__(self, channels: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(channels)
        self.cross_attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.ffn = FeedForward(channels, ffn_dim, dropout)
        self.norm3 = nn.LayerNorm(channels)
        self.post_norm = nn.LayerNorm(channels)

    def forward(
        self, query_pos: torch.Tensor, image_tokens: torch.Tensor, image_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query_pos`` ``(B, N_q, C)``, ``image_tokens`` / ``image_pos`` ``(B, N_i, C)`` ->
        ``(decoded (B, N_q, C), attention (B, N_q, N_i))``."""
        x = torch.zeros_like(query_pos)
        q = x + query_pos
        x = self.norm1(x + self.self_attn(q, q, x, need_weights=True)[0])
        out, attention = self.cross_attn(
            x + query_pos,
            image_tokens + image_pos,
            image_tokens,
            need_weights=True,
            average_attn_weights=True,
        )
        x = self.norm2(x + out)
        x = self.norm3(x + self.ffn(x))
        return self.post_norm(x), attention


def attention_minimap(attention: torch.Tensor, valid: torch.Tensor, reduction: str = "max") -> torch.Tensor:
    """``M_s``: reduce the maps ``(B, N_q, N_i)`` over the valid filtered tokens ``(B, N_q)`` -> ``(B, N_i)``.

    ``"max"`` is the released code, ``"mean"`` the paper's ``Mean(M_attn, dim=0)``.
    """
    if reduction == "max":
        return attention.masked_fill(~valid[..., None], float("-inf")).amax(1)
    weights = valid[..., None].to(attention.dtype)
    return (attention * weights).sum(1) / weights.sum(1).clamp(min=1)


def cell_distances(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Euclidean distances (in cells, float32) between all cells of an ``(h, w)`` grid, ``(h*w, h*w)`` row-major;
    exact (the square root of an integer sum of squares)."""
    rows = torch.arange(height, device=device).repeat_interleave(width).float()
    cols = torch.arange(width, device=device).repeat(height).float()
    return torch.sqrt((rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2)


class DynamicPointSelector(nn.Module):
    """Algorithm 2: greedy selection of ``N_q`` cells of the ``(h, w)`` minimap.

    ``s = sigmoid(M_s)``; the first point is ``argmax s``; each next point maximises
    ``s + W_dist * D / diag`` over the remaining cells, where ``D`` is the Euclidean distance (in cells) to the
    nearest chosen point and ``diag = sqrt(h^2 + w^2)`` (``normalization="diagonal"``, the released code) or 1
    (``"none"``, the paper's text). Ties go to the first cell in row-major order. ``mode="topk"`` takes the
    ``N_q`` highest cells instead (Fig. 4, "TopK Selector").

    Points are cell centres ``((col + 0.5) / w, (row + 0.5) / h)``, i.e. normalised ``(x, y)``.
    """

    def __init__(
        self,
        num_points: int,
        distance_weight: float = 0.003,
        normalization: str = "diagonal",
        mode: str = "distance_guided",
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.distance_weight = distance_weight
        self.normalization = normalization
        self.mode = mode

    @torch.no_grad()
    def select(self, minimap: torch.Tensor) -> torch.Tensor:
        """Flat cell indices ``(B, N_q)`` (row-major) chosen on ``minimap`` ``(B, h, w)``."""
        batch, height, width = minimap.shape
        if self.mode == "topk":
            return torch.topk(minimap.detach().flatten(1), self.num_points, dim=1).indices
        scores = minimap.detach().float().flatten(1).sigmoid()
        diag = math.sqrt(height**2 + width**2) if self.normalization == "diagonal" else 1.0
        distances = cell_distances(height, width, scores.device)
        samples = torch.arange(batch, device=scores.device)
        chosen = [scores.argmax(1)]
        taken = torch.zeros_like(scores, dtype=torch.bool)
        taken[samples, chosen[0]] = True
        nearest = torch.full_like(scores, float("inf"))
        for _ in range(self.num_points - 1):
            nearest = torch.minimum(nearest, distances[chosen[-1]])
            combined = scores + (self.distance_weight * nearest) / diag
            index = combined.masked_fill(taken, float("-inf")).argmax(1)
            taken[samples, index] = True
            chosen.append(index)
        return torch.stack(chosen, dim=1)

    def forward(self, minimap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices (B, N_q) long, points (B, N_q, 2) (x, y) in [0, 1])``."""
        height, width = minimap.shape[-2:]
        indices = self.select(minimap)
        rows = torch.div(indices, width, rounding_mode="floor")
        cols = indices - rows * width
        points = torch.stack([(cols.float() + 0.5) / width, (rows.float() + 0.5) / height], dim=-1)
        return indices, points.to(minimap.dtype)


@dataclass
class InstanceQueries:
    """Output of :class:`InstanceQueryGenerator`.

    Args:
        queries: ``Q_instance`` ``(B, N_q, C)`` (eq. 2).
        points: prior points ``P_r`` ``(B, N_q, 2)``, normalised ``(x, y)``.
        point_indices: their flat cell indices ``(B, N_q)``.
        minimap: ``M_s`` ``(B, h, w)`` (attention probabilities; the minimap loss uses them as logits).
        attention_maps: ``M_attn`` ``(B, N_q, h, w)``.
        valid: ``(B, N_q)`` bool, which filtered tokens are real.
    """

    queries: torch.Tensor
    points: torch.Tensor
    point_indices: torch.Tensor
    minimap: torch.Tensor
    attention_maps: torch.Tensor
    valid: torch.Tensor


class InstanceQueryGenerator(nn.Module):
    """IQG (Sec. 3.2.1): text filter, T2I decoder, minimap, dynamic point selector and query MLP (eq. 2)."""

    def __init__(
        self,
        channels: int,
        num_queries: int,
        num_heads: int = 8,
        ffn_dim: int = 512,
        dropout: float = 0.1,
        text_filter: str = "mean",
        minimap_reduction: str = "max",
        point_selection: str = "distance_guided",
        distance_weight: float = 0.003,
        distance_normalization: str = "diagonal",
    ) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.text_filter_mode = text_filter
        self.minimap_reduction = minimap_reduction
        self.position_embedding = SinePositionEmbedding(channels // 2, normalize=True)
        self.t2i_decoder = TextToImageDecoder(channels, num_heads, ffn_dim, dropout)
        self.point_selector = DynamicPointSelector(
            num_queries, distance_weight, distance_normalization, point_selection
        )
        self.query_mlp = MLP(2 * channels, channels, channels, 3)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, text_padding_mask: torch.Tensor
    ) -> InstanceQueries:
        """``image_features`` ``F_i`` ``(B, C, h, w)``, ``text_features`` ``F_t`` ``(B, L, C)``,
        ``text_padding_mask`` ``(B, L)`` True at padding."""
        batch, channels, height, width = image_features.shape
        image_tokens = image_features.flatten(2).transpose(1, 2)
        image_pos = self.position_embedding(image_features).flatten(2).transpose(1, 2)
        filtered, valid = text_filter(
            text_features, text_padding_mask, self.num_queries, self.text_filter_mode
        )
        decoded, attention = self.t2i_decoder(filtered, image_tokens, image_pos)
        minimap = attention_minimap(attention, valid, self.minimap_reduction).view(batch, height, width)
        indices, points = self.point_selector(minimap)
        point_features = torch.gather(image_tokens, 1, indices[..., None].expand(-1, -1, channels))
        queries = self.query_mlp(torch.cat([decoded, point_features], dim=-1))
        return InstanceQueries(
            queries=queries,
            points=points,
            point_indices=indices,
            minimap=minimap,
            attention_maps=attention.view(batch, self.num_queries, height, width),
            valid=valid,
        )


__all__ = [
    "DynamicPointSelector",
    "InstanceQueries",
    "InstanceQueryGenerator",
    "TextToImageDecoder",
    "attention_minimap",
    "cell_distances",
    "text_filter",
]
