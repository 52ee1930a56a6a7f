"""The multi-layer perceptron of DETR's prediction heads (``MLP`` in DETR, Deformable DETR and their successors)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers ``input_dim -> hidden_dim -> ... -> output_dim`` with ReLU in between.

    No activation after the last layer; parameters are ``layers.{i}.weight`` / ``layers.{i}.bias`` as in DETR.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layers to the last dimension of ``x``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nn.functional.relu(x)
        return x


__all__ = ["MLP"]
