"""Sine position embedding of DETR / Mask2Former (``PositionEmbeddingSine``), "Attention is all you need"
sinusoids applied separately to the normalised row and column index of each pixel."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEmbedding(nn.Module):
    """2D sine embedding with ``num_pos_feats`` channels for y followed by ``num_pos_feats`` for x.

    For pixel ``(i, j)`` (1-based cumulative counts of unmasked pixels) with ``normalize=True``:
    ``y = i / (H_valid + 1e-6) * scale``, ``x = j / (W_valid + 1e-6) * scale`` (Mask2Former, no 0.5 shift);
    channel ``2k`` is ``sin(y / T^(2k / F))`` and ``2k + 1`` is ``cos(y / T^(2k / F))`` (same for x).
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(
        self,
        x: torch.Tensor | torch.Size | tuple[int, int, int, int],
        mask: torch.Tensor | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Embedding ``(B, 2 * num_pos_feats, H, W)`` for a feature map ``x`` ``(B, C, H, W)`` or its shape.

        Args:
            x: the feature map (its device and dtype are used) or a 4-tuple shape.
            mask: optional ``(B, H, W)`` bool, ``True`` marks padding (excluded from the counts).
            device, dtype: used when ``x`` is a shape (default CPU / float32).
        """
        if isinstance(x, torch.Tensor):
            shape = tuple(x.shape)
            device = x.device if device is None else device
            dtype = (x.dtype if x.is_floating_point() else torch.float32) if dtype is None else dtype
        else:
            shape = tuple(int(s) for s in x)
            dtype = torch.float32 if dtype is None else dtype
        batch, _, height, width = shape
        if mask is None:
            not_mask = torch.ones(batch, height, width, device=device, dtype=dtype)
        else:  # (B, H, W)
            not_mask = (~mask.bool()).to(device=device, dtype=dtype)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, device=device, dtype=torch.float32)
        dim_t = (
            self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        ).to(dtype)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
