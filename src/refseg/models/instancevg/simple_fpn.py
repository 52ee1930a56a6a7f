"""SimpleFPN (ViTDet, Li et al. 2022, Sec. 3): a multi-scale pyramid from the single-scale ViT output.

InstanceVG (Sec. 3.1) builds four levels at strides 4, 8, 16 and 32 from the projected BEiT-3 patch features
``F_i`` (stride 16): two transposed convolutions, one, identity and a 2x2 max pooling, each followed by a
1x1 lateral and a 3x3 output convolution with channel LayerNorm and no activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (biased variance), as in ViTDet / ConvNeXt.

    The released InstanceVG builds these norms with ``eps = 1e-5``. Computed by ``layer_norm`` on the
    channels-last view; the result has the channels-last memory format (same shape).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise every pixel's channel vector, then scale and shift per channel."""
        pixels = x.permute(0, 2, 3, 1)
        return F.layer_norm(pixels, (x.shape[1],), self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    """Convolution without bias followed by :class:`LayerNorm2d` (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(conv(x))``."""
        return self.norm(self.conv(x))


class SimpleFPN(nn.Module):
    """Stride-16 features ``(B, C, h, w)`` -> four maps of ``C`` channels at ``4h, 2h, h, h/2``.

    Level channels before the lateral convolutions are ``C/4, C/2, C, C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.upsample_4x = nn.Sequential(
            nn.ConvTranspose2d(channels, half, 2, stride=2),
            LayerNorm2d(half),
            nn.GELU(),
            nn.ConvTranspose2d(half, quarter, 2, stride=2),
        )
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(channels, half, 2, stride=2))
        self.downsample_2x = nn.MaxPool2d(kernel_size=2, stride=2)
        level_channels = (quarter, half, channels, channels)
        self.lateral_convs = nn.ModuleList(ConvNorm(c, channels, 1) for c in level_channels)
        self.output_convs = nn.ModuleList(ConvNorm(channels, channels, 3) for _ in level_channels)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[c1 (stride 4), c2 (stride 8), c3 (stride 16), c4 (stride 32)]`` (channels-last memory
        format, where the convolutions and channel norms run fastest on CPU)."""
        features = features.contiguous(memory_format=torch.channels_last)
        levels = (
            self.upsample_4x(features),
            self.upsample_2x(features),
            features,
            self.downsample_2x(features),
        )
        return [out(lat(x)) for x, lat, out in zip(levels, self.lateral_convs, self.output_convs)]


__all__ = ["ConvNorm", "LayerNorm2d", "SimpleFPN"]
