"""Pure-PyTorch multi-scale deformable attention (Deformable DETR, arXiv 2010.04159, eq. 3).

This is the ``grid_sample`` formulation used by Deformable-DETR's ``ms_deform_attn_core_pytorch`` and by
transformers' ``MultiScaleDeformableAttention``. It is the fallback where the compiled op is not available
and the oracle the compiled op is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
    *,
    spatial_shapes_list: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Multi-scale deformable attention by bilinear ``grid_sample`` per level.

    Args:
        value: ``(N, S, M, D)`` values of all levels flattened, ``S = sum_l H_l * W_l``.
        spatial_shapes: ``(L, 2)`` int64 rows ``(H_l, W_l)``.
        level_start_index: ``(L,)`` int64 start of each level in ``S`` (unused here, kept for the signature).
        sampling_locations: ``(N, Lq, M, L, P, 2)`` normalised ``(x, y)`` in ``[0, 1]`` (outside is zero-padded).
        attention_weights: ``(N, Lq, M, L, P)`` weights, already normalised by the caller.
        im2col_step: accepted for drop-in compatibility; has no effect.
        spatial_shapes_list: the same shapes as Python ints; avoids reading ``spatial_shapes`` (compile friendly).

    Returns:
        ``(N, Lq, M * D)`` in ``value``'s dtype.
    """
    del level_start_index, im2col_step
    if spatial_shapes_list is None:
        spatial_shapes_list = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in spatial_shapes_list], dim=1)
    # grid_sample(align_corners=False) maps grid g to pixel (g + 1) / 2 * size - 0.5 = loc * size - 0.5
    sampling_grids = 2 * sampling_locations.to(value.dtype) - 1
    sampled = []
    for level, (height, width) in enumerate(spatial_shapes_list):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        value_l = value_list[level].permute(0, 2, 3, 1).reshape(batch * heads, channels, height, width)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        grid_l = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # (N*M, D, Lq, L*P) weighted by (N*M, 1, Lq, L*P)
    weights = (
        attention_weights.to(value.dtype).transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    )
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(batch, heads * channels, queries).transpose(1, 2).contiguous()
