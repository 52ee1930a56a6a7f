"""The transformer feed-forward block of InstanceVG's decoders (``Linear -> ReLU -> Dropout -> Linear -> Dropout``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FeedForward(nn.Module):
    """Two linear layers with ReLU and dropout after each; the caller adds the residual and the norm."""

    def __init__(self, channels: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``dropout(fc2(dropout(relu(fc1(x)))))``."""
        return self.dropout(self.fc2(self.dropout(F.relu(self.fc1(x)))))


__all__ = ["FeedForward"]
