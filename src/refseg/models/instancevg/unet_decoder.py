"""The UNet decoder of the global segmentation branch (InstanceVG Sec. 3.1, Fig. 2(c); Ronneberger et al. 2015).

From the coarsest SimpleFPN level up: upsample (bilinear, ``align_corners=True``), concatenate with the next finer
level and apply two ``3x3 conv -> BatchNorm -> ReLU`` blocks; the result ``S_global`` is at stride 4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class UNetBlock(nn.Module):
    """``(conv 3x3 without bias -> BatchNorm -> ReLU) x 2`` from ``2C`` to ``C`` channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two conv-BN-ReLU steps."""
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class UNetDecoder(nn.Module):
    """Fuse ``[c1, c2, c3, c4]`` (strides 4-32) into ``S_global`` ``(B, C, H/4, W/4)``.

    ``blocks[0]`` fuses ``c4`` into ``c3``, ``blocks[1]`` the result into ``c2``, ``blocks[2]`` into ``c1``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(UNetBlock(channels) for _ in range(3))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Top-down fusion of the four SimpleFPN levels."""
        x = levels[3]
        for block, skip in zip(self.blocks, (levels[2], levels[1], levels[0])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = block(torch.cat([x, skip], dim=1))
        return x


__all__ = ["UNetBlock", "UNetDecoder"]
