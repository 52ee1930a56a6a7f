"""The point-prior multi-scale deformable decoder (InstanceVG Sec. 3.2.2, eq. 4).

A Deformable-DETR decoder whose ``N_q`` queries are the instance queries of the IQG and whose reference
points come from the prior points ``P_r``: ``query_pos = Linear(P_r)`` and
``p_r = sigmoid(Linear(query_pos)) + P_r`` (the released code; it lies in ``(0, 2)`` and is not clamped, so
samples may fall outside the image, where the values are zero). The same reference serves every layer (no
box refinement). The values are the four SimpleFPN levels flattened, without level or position embeddings.
Each post-norm layer: self-attention, multi-scale deformable cross-attention, FFN.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...modeling.deformable_attention import MultiScaleDeformableAttention
from .feed_forward import FeedForward


class PointPriorDecoderLayer(GradientCheckpointingLayer):
    """Self-attention -> norm -> MSDeformAttn (eq. 4) -> norm -> FFN -> norm, with residuals.

    A ``GradientCheckpointingLayer``: ``gradient_checkpointing_enable()`` recomputes it in the backward pass."""

    def __init__(
        self, channels: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(channels)
        self.cross_attn = MultiScaleDeformableAttention(channels, num_heads, num_levels, num_points)
        self.cross_attn_dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(channels)
        self.ffn = FeedForward(channels, ffn_dim, dropout)
        self.norm3 = nn.LayerNorm(channels)

    def forward(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        spatial_shapes_list: list[tuple[int, int]],
    ) -> torch.Tensor:
        """``x``, ``query_pos`` ``(B, N_q, C)``; ``reference_points`` ``(B, N_q, L, 2)``; ``value`` ``(B, S, C)``."""
        q = x + query_pos
        x = self.norm1(x + self.self_attn(q, q, x, need_weights=True)[0])
        out = self.cross_attn(
            x + query_pos,
            reference_points,
            value,
            spatial_shapes,
            level_start_index,
            spatial_shapes_list=spatial_shapes_list,
        )
        x = self.norm2(x + self.cross_attn_dropout(out))
        return self.norm3(x + self.ffn(x))


class PointPriorDeformableDecoder(nn.Module):
    """Decode the instance queries against the multi-scale features around their prior points.

    Args:
        channels: ``C``.
        num_layers, num_heads, num_points, ffn_dim, dropout: decoder sizes (3, 8, 4, 1024, 0.1 released).
        num_levels: feature levels (4: SimpleFPN strides 4-32).
        point_prior: add the prior points to the learned reference (Table 9); ``False`` keeps only the learned
            ``sigmoid(Linear(query_pos))`` of Deformable DETR.
    """

    def __init__(
        self,
        channels: int,
        num_layers: int = 3,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        point_prior: bool = True,
    ) -> None:
        super().__init__()
        self.point_prior = point_prior
        self.num_levels = num_levels
        self.query_pos_embedding = nn.Linear(2, channels)
        self.reference_points = nn.Linear(channels, 2)
        self.layers = nn.ModuleList(
            PointPriorDecoderLayer(channels, num_heads, num_levels, num_points, ffn_dim, dropout)
            for _ in range(num_layers)
        )

    def forward(
        self, queries: torch.Tensor, points: torch.Tensor, levels: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``queries`` ``(B, N_q, C)``, ``points`` ``(B, N_q, 2)``, ``levels`` ``[(B, C, H_l, W_l)]`` ->
        ``(states of every layer [(B, N_q, C)], reference points (B, N_q, 2))``."""
        spatial_shapes_list = [(int(f.shape[-2]), int(f.shape[-1])) for f in levels]
        spatial_shapes = torch.tensor(spatial_shapes_list, dtype=torch.long, device=queries.device)
        sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
        level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        value = torch.cat([f.flatten(2).transpose(1, 2) for f in levels], dim=1)

        query_pos = self.query_pos_embedding(points)
        reference = self.reference_points(query_pos).sigmoid()
        if self.point_prior:
            reference = reference + points
        reference_per_level = reference[:, :, None].expand(-1, -1, self.num_levels, -1)
        states, x = [], queries
        for layer in self.layers:
            x = layer(
                x,
                query_pos,
                reference_per_level,
                value,
                spatial_shapes,
                level_start_index,
                spatial_shapes_list,
            )
            states.append(x)
        return states, reference


__all__ = ["PointPriorDecoderLayer", "PointPriorDeformableDecoder"]
