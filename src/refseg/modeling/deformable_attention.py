"""Multi-scale deformable attention module (Deformable DETR, arXiv 2010.04159, Sec. 4.1, eq. 3).

Each query attends to ``num_points`` sampled locations per feature level and head; the locations are
a reference point plus learned offsets and the weights are a softmax over ``num_levels * num_points``.
The sampling itself is ``refseg.kernels.multi_scale_deformable_attention`` (compiled where available).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init

from ..kernels import multi_scale_deformable_attention


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over ``num_levels`` flattened feature maps.

    Args:
        embed_dim: channels ``C`` of queries and values; must be divisible by ``num_heads``.
        num_heads: attention heads ``M``.
        num_levels: feature levels ``L``.
        num_points: sampling points ``P`` per head and level.
        im2col_step: forwarded to the kernel (no numerical effect).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int = 4,
        im2col_step: int = 64,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.head_dim = embed_dim // num_heads  # the model configs check divisibility
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable-DETR initialisation.

        Offsets start at zero weight with a bias placing point ``p`` of head ``m`` at ``(p + 1)`` pixels in
        direction ``2 pi m / M`` (scaled so the larger coordinate is 1); attention weights start uniform
        (zero weight and bias); value/output projections are Xavier-uniform with zero bias. Uses
        ``transformers.initialization`` so weights loaded from a checkpoint are left untouched; call it from a
        model's ``_init_weights``.
        """
        init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        init.copy_(self.sampling_offsets.bias, grid.reshape(-1).to(self.sampling_offsets.bias.dtype))
        init.constant_(self.attention_weights.weight, 0.0)
        init.constant_(self.attention_weights.bias, 0.0)
        init.xavier_uniform_(self.value_proj.weight)
        init.constant_(self.value_proj.bias, 0.0)
        init.xavier_uniform_(self.output_proj.weight)
        init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        value_padding_mask: torch.Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Attend from ``query`` to the multi-scale ``value``.

        Args:
            query: ``(B, Lq, C)`` with the position embedding already added.
            reference_points: ``(B, Lq, L, 2)`` normalised ``(x, y)`` in ``[0, 1]``, or ``(B, Lq, L, 4)`` boxes
                ``(cx, cy, w, h)`` (offsets then scale with the box, Deformable DETR eq. in Sec. A.2).
            value: ``(B, S, C)`` flattened feature maps, ``S = sum_l H_l * W_l``.
            spatial_shapes: ``(L, 2)`` int64 ``(H_l, W_l)``.
            level_start_index: ``(L,)`` int64 start of each level in ``S``.
            value_padding_mask: ``(B, S)`` bool, ``True`` marks padding (zeroed before sampling), or ``None``.
            spatial_shapes_list: the shapes as Python ints (avoids a device read; compile friendly).

        Returns:
            ``(B, Lq, C)``.
        """
        batch, num_queries, _ = query.shape  # (B, Lq, C)
        _, seq_len, _ = value.shape  # (B, S, C); reference_points (B, Lq, L, 2 or 4), spatial_shapes (L, 2)
        value = self.value_proj(value)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, seq_len, self.num_heads, self.head_dim)

        offsets = self.sampling_offsets(query).view(
            batch, num_queries, self.num_heads, self.num_levels, self.num_points, 2
        )
        weights = self.attention_weights(query).view(
            batch, num_queries, self.num_heads, self.num_levels * self.num_points
        )
        weights = weights.softmax(-1).view(
            batch, num_queries, self.num_heads, self.num_levels, self.num_points
        )

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (W_l, H_l)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            locations = (
                reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
            )
        else:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )

        output = multi_scale_deformable_attention(
            value,
            spatial_shapes,
            level_start_index,
            locations,
            weights,
            self.im2col_step,
            spatial_shapes_list=spatial_shapes_list,
        )
        return self.output_proj(output)
