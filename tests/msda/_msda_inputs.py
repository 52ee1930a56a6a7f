"""Random inputs in the Deformable-DETR layouts for the kernel tests."""

from __future__ import annotations

import torch


def level_tensors(shapes):
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes.prod(-1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return spatial_shapes, level_start_index, int(areas.sum())


def away_from_kinks(loc, shapes, margin=0.1):
    """Move sampling points at least ``margin`` pixels away from integer pixel coordinates (kinks)."""
    wh = torch.tensor([[w, h] for h, w in shapes], dtype=loc.dtype)  # (L, 2)
    pix = loc * wh[:, None, :] - 0.5  # (..., L, P, 2) in pixels
    frac = pix - pix.floor()
    frac = frac.clamp(margin, 1 - margin)
    return (pix.floor() + frac + 0.5) / wh[:, None, :]


def make_inputs(
    shapes, batch=2, queries=5, heads=2, channels=8, points=3, dtype=torch.float32, outside=0.2, seed=0
):
    """value, spatial_shapes, level_start_index, sampling_locations, attention_weights.

    Locations are uniform in ``[-outside, 1 + outside]`` so some points fall outside the maps; all are kept
    at least 0.1 px from integer pixel coordinates.
    """
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes, level_start_index, seq = level_tensors(shapes)
    levels = len(shapes)
    value = torch.randn(batch, seq, heads, channels, generator=gen, dtype=torch.float64)
    loc = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, dtype=torch.float64)
    loc = loc * (1 + 2 * outside) - outside
    loc = away_from_kinks(loc, shapes)
    attn = torch.rand(batch, queries, heads, levels, points, generator=gen, dtype=torch.float64)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return value.to(dtype), spatial_shapes, level_start_index, loc.to(dtype), attn.to(dtype)
