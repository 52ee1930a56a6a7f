"""The target query (Kim et al., AAAI 2026, Sec. 3.2): reads the sentence (eq. 3), then the pixel decoder (eq. 4).

A learnable embedding ``e'_0`` first cross-attends to the text features, ``e_0 = CrossAttn(f^T; e'_0)``
(eq. 3), which feeds the plurality head; it then cross-attends, block by block, to the stride-32 slice of the
pixel decoder's intermediate states, ``e_l = CrossAttn_l(f^{M,4}_{l-1}; e_{l-1})`` (eq. 4), and ``e_L`` feeds the
presence head. The query does not feed back into the mask path (Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_layers import GradientCheckpointingLayer


def mlp(input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` linear layers with ReLU in between (the heads' "single MLP", Sec. 3.1).

    The ReLUs work in place (each follows a linear layer or an upsampling, whose backward does not need its
    output), which spares a copy of the full-resolution mask head's hidden map.
    """
    dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class TargetQueryCrossAttention(GradientCheckpointingLayer):
    """``CrossAttn`` of eq. 3-4: multi-head cross-attention, residual, LayerNorm, then FFN, residual, LayerNorm.

    The paper cites the Transformer for this block without details; this is Mask2Former's decoder
    cross-attention + FFN layer (post-norm). Position embeddings are added to the keys only.
    A ``GradientCheckpointingLayer``: ``gradient_checkpointing_enable()`` recomputes it in the backward pass.

    Args:
        hidden_dim: channels ``C``.
        num_heads: attention heads.
        ffn_dim: FFN width.
        dropout: dropout on the attention output and in the FFN.
    """

    def __init__(self, hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.attention_norm = nn.LayerNorm(hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, hidden_dim)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        memory_position: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Update ``query`` ``(B, 1, C)`` from ``memory`` ``(B, S, C)``; ``memory_padding_mask`` is True at padding."""
        keys = memory if memory_position is None else memory + memory_position
        if memory_padding_mask is not None:  # a fully padded memory would give NaN: attend to it all instead
            memory_padding_mask = memory_padding_mask & ~memory_padding_mask.all(dim=1, keepdim=True)
        attended, _ = self.attention(
            query, keys, memory, key_padding_mask=memory_padding_mask, need_weights=False
        )
        query = self.attention_norm(query + self.dropout(attended))
        ffn = self.fc2(self.dropout(F.relu(self.fc1(query))))
        return self.ffn_norm(query + self.dropout(ffn))


@dataclass
class TargetQueryOutput:
    """States of the target query: ``e_0`` (eq. 3) and ``e_1 .. e_L`` (eq. 4), each ``(B, C)``."""

    text_state: torch.Tensor
    visual_states: list[torch.Tensor]

    @property
    def states(self) -> torch.Tensor:
        """``(L + 1, B, C)``: ``e_0 .. e_L``."""
        return torch.stack([self.text_state, *self.visual_states])


class TargetQuery(nn.Module):
    """The learnable target query ``e'_0`` and its ``1 + L`` cross-attention blocks (eq. 3 and eq. 4).

    Args:
        hidden_dim: channels ``C`` of the query and the pixel decoder.
        text_dim: channels of the text features (projected to ``C`` before eq. 3).
        num_layers: ``L``, one block per pixel-decoder layer.
        num_heads, ffn_dim, dropout: of each :class:`TargetQueryCrossAttention`.
    """

    def __init__(
        self,
        hidden_dim: int,
        text_dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.query_embedding = nn.Embedding(1, hidden_dim)
        self.text_projection = nn.Linear(text_dim, hidden_dim)
        self.text_cross_attention = TargetQueryCrossAttention(hidden_dim, num_heads, ffn_dim, dropout)
        self.visual_cross_attention = nn.ModuleList(
            TargetQueryCrossAttention(hidden_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )

    def read_text(self, text_features: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Eq. 3: ``e_0 = CrossAttn(f^T; e'_0)`` ``(B, 1, C)``; padded words are not attended to."""
        query = self.query_embedding.weight[None].expand(text_features.shape[0], -1, -1)
        return self.text_cross_attention(query, self.text_projection(text_features), None, ~text_mask.bool())

    def forward(
        self,
        text_features: torch.Tensor,
        text_mask: torch.Tensor,
        visual_states: list[torch.Tensor],
        visual_position: torch.Tensor,
        visual_padding_mask: torch.Tensor | None = None,
    ) -> TargetQueryOutput:
        """Run eq. 3 then eq. 4.

        Args:
            text_features: ``f^T`` ``(B, T, text_dim)``; text_mask: ``(B, T)`` 1 for words.
            visual_states: the ``L`` slices the blocks read, in order (``f^{M,4}_0 .. f^{M,4}_{L-1}`` for the
                literal eq. 4), each ``(B, S, C)``.
            visual_position: position + level embeddings of those tokens ``(B, S, C)``.
            visual_padding_mask: ``(B, S)`` True at letterbox padding.
        """
        query = self.read_text(text_features, text_mask)
        text_state, states = query[:, 0], []
        for block, memory in zip(self.visual_cross_attention, visual_states):
            query = block(query, memory, visual_position, visual_padding_mask)
            states.append(query[:, 0])
        return TargetQueryOutput(text_state=text_state, visual_states=states)


__all__ = ["TargetQuery", "TargetQueryCrossAttention", "TargetQueryOutput", "mlp"]
