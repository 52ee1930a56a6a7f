"""Segmentation decoder guided by the guidance set (METRIS Sec. 3.3).

"At each decoder stage, the cross-attention layer, which uses the vision features as the query and the
guidance tokens as the key-value, is employed to highlight the target regions. The vision decoder features
are then upsampled and concatenated with the corresponding vision encoder features to feed into the next
decoder stage." The paper does not give the widths or the merge layers; we follow its code lineage
(LAVT/CrossVLT/DMMI decoders): a 1x1 projection of ``F_4`` to ``hidden_dim``, then at strides 32, 16, 8 a
guidance cross-attention, a bilinear x2 upsampling, concatenation with ``F_3``, ``F_2``, ``F_1`` and two 3x3
conv-BN-ReLU, and a last cross-attention at stride 4. No positional encoding is added to the pixel queries
(the paper mentions none); ``position_encoding=True`` (beyond the paper) adds a 2-D sine embedding to the map
entering every stage.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.position_encoding import SinePositionEmbedding
from .attention import AttentionMLPLayer


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class GuidanceCrossAttention(nn.Module):
    """Pixels of a (B, C, h, w) map attend to the guidance tokens (B, K, D): one decoder-stage cross-attention."""

    def __init__(
        self, dim: int, guidance_dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.layer = AttentionMLPLayer(dim, guidance_dim, num_heads, ffn_dim, dropout)

    def forward(
        self,
        features: torch.Tensor,
        guidance: torch.Tensor,
        guidance_padding_mask: torch.Tensor,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the updated map (B, C, h, w) and, when asked, the weights (B, heads, h*w, K)."""
        batch, channels, height, width = features.shape
        queries = features.flatten(2).transpose(1, 2)
        out, weights = self.layer(
            queries, guidance, key_padding_mask=guidance_padding_mask, return_weights=return_weights
        )
        return out.transpose(1, 2).reshape(batch, channels, height, width), weights


class GuidedSegmentationDecoder(nn.Module):
    """Four decoder stages, each with a cross-attention to the guidance set (Sec. 3.3).

    Args:
        in_channels: channels of ``F_1..F_4`` (strides 4, 8, 16, 32).
        hidden_dim: decoder channels.
        guidance_dim: ``D``, channels of the guidance tokens.
        num_heads, ffn_dim, dropout: of the cross-attention layers.
        position_encoding: add a sine position embedding of ``hidden_dim`` channels to the map entering every
            stage (beyond the paper).
    """

    def __init__(
        self,
        in_channels: list[int],
        hidden_dim: int,
        guidance_dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        position_encoding: bool = False,
    ) -> None:
        super().__init__()
        self.input_projection = nn.Conv2d(in_channels[3], hidden_dim, 1)
        self.cross_attentions = nn.ModuleList(
            GuidanceCrossAttention(hidden_dim, guidance_dim, num_heads, ffn_dim, dropout) for _ in range(4)
        )
        self.merges = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(hidden_dim + c, hidden_dim), _conv_bn_relu(hidden_dim, hidden_dim))
            for c in (in_channels[2], in_channels[1], in_channels[0])
        )
        self.position_embedding = SinePositionEmbedding(hidden_dim // 2) if position_encoding else None

    def forward(
        self,
        features: list[torch.Tensor],
        guidance: torch.Tensor,
        guidance_padding_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``F_1..F_4`` and the guidance set (B, K, D) with its padding mask (B, K) -> (B, hidden, H/4, W/4).

        With ``return_attention`` also the per-head cross-attention weights of the 4 stages (strides 32 to 4).
        """
        x = self.input_projection(features[3])
        weights: list[torch.Tensor] = []
        for stage in range(4):
            if self.position_embedding is not None:
                x = x + self.position_embedding(x)
            x, w = self.cross_attentions[stage](x, guidance, guidance_padding_mask, return_attention)
            if return_attention:
                weights.append(w)
            if stage == 3:
                break
            skip = features[2 - stage]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = self.merges[stage](torch.cat([x, skip], dim=1))
        return x, (weights if return_attention else None)
