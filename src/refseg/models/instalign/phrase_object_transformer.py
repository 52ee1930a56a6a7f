"""Phrase-Object Transformer (InstAlign Sec. 3.3, Fig. 3).

Block ``k`` refines object queries ``Q_{k-1}`` and text features ``T_{k-1}`` with visual features ``V_k``:
the queries pass through (1) a cross-attention layer over ``V_k`` (masked attention as in Mask2Former when
``masked_attention`` is on: each query only sees the foreground of the mask predicted after block ``k-1``),
(2) the bidirectional Object-Text Cross Attention, which also yields ``T_k``, (3) self-attention and
(4) an FFN; every sub-layer is a post-norm residual. ``V_k`` cycles round-robin over the 3 low-resolution
scales of the pixel decoder (strides 32, 16, 8), each with a learned level embedding and sine positions.

After the learned queries and after every block the shared prediction heads (eq. 4) and the Phrase-Object
Alignment (eq. 1-3) are evaluated, giving ``K + 1`` predictions; the last one is the model output and the
others feed the masked attention and the deep supervision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...modeling.position_encoding import SinePositionEmbedding
from .heads import InstancePredictionHeads
from .no_target import sentence_feature
from .object_text_attention import ObjectTextCrossAttention
from .phrase_object_alignment import PhraseObjectAlignment

NUM_SCALES = 3


class PhraseObjectTransformerBlock(GradientCheckpointingLayer):
    """One Phrase-Object Transformer block: visual cross-attn, object-text cross-attn, self-attn, FFN.

    With ``object_text_attention=False`` the object-text step is dropped and the block is a Mask2Former
    decoder layer (Table 3e): the text features pass through unchanged.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        object_text_attention: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.visual_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.visual_norm = nn.LayerNorm(hidden_dim)
        self.object_text_attention = (
            ObjectTextCrossAttention(hidden_dim, num_heads, dropout) if object_text_attention else None
        )
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, hidden_dim)
        )
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None,
        visual_features: torch.Tensor,
        visual_pos: torch.Tensor,
        visual_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine ``Q_{k-1}`` ``(B, N, C)`` and ``T_{k-1}`` ``(B, L, C)`` with ``V_k`` ``(B, S, C)``.

        ``visual_attention_mask`` is ``(B * num_heads, N, S)`` bool with ``True`` = not allowed, or ``None``.
        """
        attended = self.visual_attention(
            queries + query_pos,
            visual_features + visual_pos,
            visual_features,
            attn_mask=visual_attention_mask,
            need_weights=False,
        )[0]
        queries = self.visual_norm(queries + self.dropout(attended))
        if self.object_text_attention is not None:
            queries, text_features = self.object_text_attention(queries, text_features, text_mask, query_pos)
        anchor = queries + query_pos
        attended = self.self_attention(anchor, anchor, queries, need_weights=False)[0]
        queries = self.self_norm(queries + self.dropout(attended))
        queries = self.ffn_norm(queries + self.dropout(self.ffn(queries)))
        return queries, text_features


@dataclass
class PhraseObjectPrediction:
    """Predictions after one block (or after the learned queries, index 0)."""

    queries: torch.Tensor  # Q_k (B, N, C)
    text_features: torch.Tensor  # T_k (B, L, C)
    score_logits: torch.Tensor  # (B, N)
    mask_logits: torch.Tensor | None  # (B, N, H/4, W/4); None for skipped intermediate masks
    relevance: torch.Tensor  # R_k (B, N, L), eq. 1
    phrase_cost: torch.Tensor  # L_phrase (B, N), eq. 3


@dataclass
class PhraseObjectTransformerOutput:
    predictions: list[PhraseObjectPrediction] = field(default_factory=list)

    @property
    def last(self) -> PhraseObjectPrediction:
        return self.predictions[-1]


def masked_attention_mask(mask_logits: torch.Tensor, size: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Mask2Former's attention mask: ``True`` where the resized predicted mask has probability < 0.5.

    ``mask_logits`` ``(B, N, h, w)`` -> ``(B * num_heads, N, size[0] * size[1])``; a query whose mask is empty
    at this scale may attend everywhere.
    """
    if tuple(mask_logits.shape[-2:]) != tuple(size):
        mask_logits = nn.functional.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    blocked = mask_logits.flatten(2) < 0.0  # sigmoid(x) < 0.5
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.repeat_interleave(num_heads, dim=0).detach()


class PhraseObjectTransformer(nn.Module):
    """``K`` Phrase-Object Transformer blocks over the pixel decoder's 3 scales, with shared heads.

    Args:
        hidden_dim, num_heads, ffn_dim, dropout: block sizes.
        num_queries: ``N`` learned object queries (content + positional embeddings).
        num_blocks: ``K``.
        mask_dim: channels of the stride-4 mask features.
        masked_attention: use Mask2Former's masked visual cross-attention.
        text_conditioned_score: give the score head the query-sentence matching term (see
            :class:`InstancePredictionHeads`).
        object_text_attention: keep the Object-Text Cross Attention in every block (``False``: Mask2Former's
            decoder, Table 3e).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        ffn_dim: int,
        num_queries: int,
        num_blocks: int,
        mask_dim: int,
        dropout: float = 0.0,
        masked_attention: bool = True,
        text_conditioned_score: bool = False,
        object_text_attention: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.masked_attention = masked_attention
        self.query_features = nn.Embedding(num_queries, hidden_dim)
        self.query_position = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_SCALES, hidden_dim)
        self.position_embedding = SinePositionEmbedding(hidden_dim // 2, normalize=True)
        self.blocks = nn.ModuleList(
            PhraseObjectTransformerBlock(hidden_dim, num_heads, ffn_dim, dropout, object_text_attention)
            for _ in range(num_blocks)
        )
        self.heads = InstancePredictionHeads(hidden_dim, mask_dim, text_conditioned_score)
        self.alignment = PhraseObjectAlignment()

    def _predict(
        self,
        queries: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None,
        mask_features: torch.Tensor | None,
    ) -> PhraseObjectPrediction:
        sentence = None
        if self.heads.score_query_proj is not None:
            sentence = sentence_feature(text_features, text_mask)
        _, score_logits, mask_logits = self.heads(queries, mask_features, sentence)
        relevance, _, phrase_cost = self.alignment(queries, text_features, text_mask)
        return PhraseObjectPrediction(
            queries, text_features, score_logits, mask_logits, relevance, phrase_cost
        )

    def forward(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        text_features: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        output_intermediate_masks: bool = True,
    ) -> PhraseObjectTransformerOutput:
        """Run the ``K`` blocks.

        Args:
            multi_scale_features: 3 maps ``(B, C, H_l, W_l)``, lowest resolution first.
            mask_features: ``V_4`` ``(B, C_mask, H/4, W/4)``.
            text_features: ``T_0`` ``(B, L, C)``.
            text_mask: ``(B, L)`` 1 for tokens, 0 for padding.
            output_intermediate_masks: compute the intermediate predictions' masks at ``H/4`` (needed for deep
                supervision). When ``False`` (inference) they are ``None`` and the masked attention gets its
                masks from ``V_4`` resized to the attention scale: bilinear resizing is linear, so
                ``resize(V_4 . e) = resize(V_4) . e`` and the attention masks are unchanged, at a fraction of
                the cost. The last prediction always has full-resolution masks.
        """
        batch = mask_features.shape[0]
        visual, visual_pos, sizes = [], [], []
        for level, feature in enumerate(multi_scale_features):
            sizes.append(tuple(feature.shape[-2:]))
            visual_pos.append(self.position_embedding(feature).flatten(2).transpose(1, 2))
            visual.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
        resized_mask_features = None
        if self.masked_attention and not output_intermediate_masks:
            resized_mask_features = [
                nn.functional.interpolate(mask_features, size=size, mode="bilinear", align_corners=False)
                for size in sizes
            ]

        queries = self.query_features.weight[None].expand(batch, -1, -1)
        query_pos = self.query_position.weight[None].expand(batch, -1, -1)
        output = PhraseObjectTransformerOutput()
        attention_source = None  # mask logits that drive the next block's masked attention
        for index in range(len(self.blocks) + 1):
            if index > 0:
                level = (index - 1) % NUM_SCALES
                attention_mask = None
                if self.masked_attention:
                    attention_mask = masked_attention_mask(attention_source, sizes[level], self.num_heads)
                queries, text_features = self.blocks[index - 1](
                    queries,
                    query_pos,
                    text_features,
                    text_mask,
                    visual[level],
                    visual_pos[level],
                    attention_mask,
                )
            if index == len(self.blocks) or output_intermediate_masks:
                prediction = self._predict(queries, text_features, text_mask, mask_features)
                attention_source = prediction.mask_logits
            else:
                features = (
                    None if resized_mask_features is None else resized_mask_features[index % NUM_SCALES]
                )
                prediction = self._predict(queries, text_features, text_mask, features)
                attention_source, prediction.mask_logits = prediction.mask_logits, None
            output.predictions.append(prediction)
        return output
