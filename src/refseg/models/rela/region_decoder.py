"""The ReLA decoder (Liu, Ding, Jiang, CVPR 2023, Sec. 3.2, Fig. 3), as released with the checkpoints.

``P`` region queries (one per cell of a ``sqrt(P) x sqrt(P)`` minimap) are refined by ``L`` layers. Layer ``k``
reads the pixel decoder's map of level ``k mod 3`` (strides 32, 16, 8):

1. region-image attention (RIA): masked cross-attention of the regions to the image features, each region
   attending only where its own mask of the previous step has probability >= 0.5 (Mask2Former's masked
   attention);
2. in the first layer only, region-language attention (RLA, language part): the regions attend to the
   projected words, ``x <- x + rla_weight * sigmoid(w) * LN(x + Attn(x, T, T))``;
3. region-region attention (RLA, vision part): self-attention of the regions;
4. an FFN. Every sub-layer is a post-norm residual.

After the learned queries and after every layer, :class:`ReLAHeads` give the region masks, the minimap, the
target mask (eq. of Sec. 3.2: the minimap-weighted sum of the region embeddings, read against the mask
features) and the no-target logits (mean over regions). The masks of one step make the attention mask of the
next. The paper's figure applies the language attention after the last layer; the released code (whose
checkpoints refseg converts) applies it in the first, and refseg follows the code (``docs/models/rela.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...modeling.mlp import MLP
from ...modeling.position_encoding import SinePositionEmbedding

NUM_LEVELS = 3


@dataclass
class ReLAPrediction:
    """What :class:`ReLAHeads` predict from the region features of one step.

    Attributes:
        region_mask_logits: ``(B, P, h, w)`` the mask of every region (stride 4).
        minimap_logits: ``(B, P, 2)`` per region: does it hold the target (index 1)?
        target_mask_logits: ``(B, 2, h, w)`` background / target logits of the referred object(s).
        no_target_logits: ``(B, 2)`` target / no-target logits (index 1 = nothing is referred to).
    """

    region_mask_logits: torch.Tensor
    minimap_logits: torch.Tensor
    target_mask_logits: torch.Tensor
    no_target_logits: torch.Tensor


class ReLAHeads(nn.Module):
    """Region embeddings, minimap, target mask and no-target heads on ``LN(x)`` (Sec. 3.2)."""

    def __init__(
        self, hidden_dim: int, mask_dim: int, mask_mlp_layers: int, no_target_mlp_layers: int
    ) -> None:
        super().__init__()
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, mask_mlp_layers)
        self.minimap_embed = nn.Linear(hidden_dim, 2)
        self.no_target_embed = MLP(hidden_dim, hidden_dim, 2, no_target_mlp_layers)

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor) -> ReLAPrediction:
        """``queries`` ``(B, P, C)``, ``mask_features`` ``(B, D, h, w)``."""
        regions = self.decoder_norm(queries)
        region_embed = self.mask_embed(regions)  # (B, P, D)
        region_masks = torch.einsum("bqc,bchw->bqhw", region_embed, mask_features)
        minimap = self.minimap_embed(regions)  # (B, P, 2)
        # the raw minimap logits weight the region embeddings (no softmax), then read the mask features
        target_embed = torch.einsum("bqa,bqc->bac", minimap, region_embed)
        target_masks = torch.einsum("bac,bchw->bahw", target_embed, mask_features)
        no_target = self.no_target_embed(regions).mean(dim=1)  # global average over the regions
        return ReLAPrediction(region_masks, minimap, target_masks, no_target)


def region_attention_mask(
    region_mask_logits: torch.Tensor, size: tuple[int, int], num_heads: int
) -> torch.Tensor:
    """``(B * num_heads, P, h * w)`` bool, True where a region may not attend: its mask resized to ``size`` has
    ``sigmoid < 0.5`` (the released code's form, which differs from ``logit < 0`` for logits in about
    ``[-1.2e-7, 0)``); a region blocked everywhere may attend everywhere."""
    resized = nn.functional.interpolate(region_mask_logits, size=size, mode="bilinear", align_corners=False)
    blocked = resized.sigmoid().flatten(2) < 0.5
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.repeat_interleave(num_heads, dim=0).detach()


class RegionLanguageAttention(nn.Module):
    """The language part of RLA: ``x + rla_weight * sigmoid(w) * LN(x + Attn(q=x, k=v=W_l T))``.

    No positional terms and, as released, no key padding mask: the padded word positions are attended, which
    is why the processor always pads to the same length. ``language_weight`` (``w``) starts at 0 and
    ``language_projection`` at zero, as released.
    """

    def __init__(
        self, hidden_dim: int, text_dim: int, num_heads: int, rla_weight: float, dropout: float
    ) -> None:
        super().__init__()
        self.language_projection = nn.Linear(text_dim, hidden_dim, bias=False)
        self.attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden_dim)
        self.language_weight = nn.Parameter(torch.zeros(()))
        self.rla_weight = rla_weight

    def forward(self, queries: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``queries`` ``(B, P, C)``, ``text_features`` ``(B, L, C_text)`` (all ``L`` positions)."""
        words = self.language_projection(text_features)
        attended = self.attention(queries, words, words, need_weights=False)[0]
        update = self.norm(queries + attended) * torch.sigmoid(self.language_weight)
        return queries + update * self.rla_weight


class ReLALayer(GradientCheckpointingLayer):
    """One ReLA layer: region-image attention, (region-language attention), region-region attention, FFN."""

    def __init__(self, hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.region_image_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.region_image_norm = nn.LayerNorm(hidden_dim)
        self.region_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.region_norm = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, hidden_dim)
        )
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        image_features: torch.Tensor,
        image_pos: torch.Tensor,
        attention_mask: torch.Tensor,
        text_features: torch.Tensor | None = None,
        language_attention: RegionLanguageAttention | None = None,
    ) -> torch.Tensor:
        """``queries``/``query_pos`` ``(B, P, C)``, ``image_features``/``image_pos`` ``(B, S, C)``,
        ``attention_mask`` ``(B * heads, P, S)`` (True = blocked); ``language_attention`` in the first layer."""
        attended = self.region_image_attention(
            queries + query_pos,
            image_features + image_pos,
            image_features,
            attn_mask=attention_mask,
            need_weights=False,
        )[0]
        queries = self.region_image_norm(queries + self.dropout(attended))
        if language_attention is not None:
            queries = language_attention(queries, text_features)
        anchor = queries + query_pos
        attended = self.region_attention(anchor, anchor, queries, need_weights=False)[0]
        queries = self.region_norm(queries + self.dropout(attended))
        return self.ffn_norm(queries + self.dropout(self.ffn(queries)))


@dataclass
class ReLADecoderOutput:
    """Output of :class:`ReLADecoder`.

    Attributes:
        predictions: the head outputs after the learned queries, then after each layer (``L + 1``).
        hidden_states: the region features ``(B, P, C)`` after each layer (``L``).
    """

    predictions: list[ReLAPrediction]
    hidden_states: list[torch.Tensor]

    @property
    def last(self) -> ReLAPrediction:
        """The prediction after the last layer (the model's output)."""
        return self.predictions[-1]


class ReLADecoder(nn.Module):
    """``L`` ReLA layers over the 3 low-resolution pixel-decoder maps, with the shared heads (Sec. 3.2)."""

    def __init__(
        self,
        hidden_dim: int,
        mask_dim: int,
        text_dim: int,
        num_heads: int,
        ffn_dim: int,
        num_layers: int,
        num_queries: int,
        rla_weight: float,
        mask_mlp_layers: int = 3,
        no_target_mlp_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.position_embedding = SinePositionEmbedding(hidden_dim // 2, normalize=True)
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(
            ReLALayer(hidden_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.language_attention = RegionLanguageAttention(
            hidden_dim, text_dim, num_heads, rla_weight, dropout
        )
        self.heads = ReLAHeads(hidden_dim, mask_dim, mask_mlp_layers, no_target_mlp_layers)

    def forward(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        text_features: torch.Tensor,
    ) -> ReLADecoderOutput:
        """``multi_scale_features``: 3 maps ``(B, C, h_l, w_l)`` low resolution first; ``mask_features``
        ``(B, D, h, w)``; ``text_features`` ``(B, L, C_text)`` (every position, padding included)."""
        sources, positions, sizes = [], [], []
        for level, feature in enumerate(multi_scale_features):
            sizes.append(tuple(feature.shape[-2:]))
            pos = self.position_embedding(feature)
            positions.append(pos.flatten(2).transpose(1, 2))
            sources.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        queries = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)

        prediction = self.heads(queries, mask_features)
        predictions, states = [prediction], []
        for index, layer in enumerate(self.layers):
            level = index % NUM_LEVELS
            mask = region_attention_mask(prediction.region_mask_logits, sizes[level], self.num_heads)
            queries = layer(
                queries,
                query_pos,
                sources[level],
                positions[level],
                mask,
                text_features,
                self.language_attention if index == 0 else None,
            )
            states.append(queries)
            prediction = self.heads(queries, mask_features)
            predictions.append(prediction)
        return ReLADecoderOutput(predictions, states)


__all__ = [
    "ReLADecoder",
    "ReLADecoderOutput",
    "ReLAHeads",
    "ReLALayer",
    "ReLAPrediction",
    "RegionLanguageAttention",
    "region_attention_mask",
]
