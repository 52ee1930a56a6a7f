"""Visual Expression Extractor (METRIS Sec. 3.2, eq. 1-3 and 5-7).

Three steps turn the vision tokens ``F_v`` (B, N, D) and the enhanced linguistic tokens ``Q_L_hat`` (B, L, D)
into the visual expression tokens ``Q_V_hat`` (B, L, D), one per linguistic cue:

1. curation of informative tokens: joint embedding (eq. 1), cosine relevance ``S_c`` and top-``r`` curation
   ``E`` (eq. 2), dynamic mask ``M`` (eq. 3);
2. adaptive refinement: masked-softmax aggregation ``F_a`` (eq. 5), then dynamic masked cross-attention
   ``F_r`` (eq. 6);
3. visual relationship modelling: self-attention among the visual tokens (eq. 7).

The [CLS] row of ``S_c`` is also what the pixel contrastive loss (eq. 4) supervises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AttentionMLPLayer


def num_curated_tokens(num_tokens: int, ratio: float) -> int:
    """``N_p = ceil(r N)`` (eq. 2; the paper gives ``r`` as a percentage); at least 1, at most ``N``.

    ``r N`` is rounded to 6 decimals first so that e.g. 0.3 x 10 (3.0000000000000004 in floating point) keeps 3.
    """
    return min(num_tokens, max(1, math.ceil(round(ratio * num_tokens, 6))))


def relevance_score_map(vision_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Eq. 2, ``S_c = C(X, Y)``: cosine similarity of every cue ``Y_l`` with every vision token ``X_n``.

    Args:
        vision_embeddings: ``X`` (B, N, d).
        text_embeddings: ``Y`` (B, L, d).

    Returns:
        ``S_c`` (B, L, N) in [-1, 1].
    """
    x = F.normalize(vision_embeddings, dim=-1)
    y = F.normalize(text_embeddings, dim=-1)
    return y @ x.transpose(1, 2)


def curate_informative_tokens(relevance: torch.Tensor, ratio: float) -> torch.Tensor:
    """Eq. 2, ``E = R(S_c, r)``: per cue, the ``ceil(r N)`` vision tokens of highest relevance.

    Returns a bool (B, L, N) tensor, True at the curated tokens ``E^l``; every row has exactly ``N_p`` of them
    (``torch.topk`` breaks ties).
    """
    k = num_curated_tokens(relevance.shape[-1], ratio)
    indices = relevance.topk(k, dim=-1).indices
    curated = torch.zeros_like(relevance, dtype=torch.bool)
    return curated.scatter(-1, indices, True)


def dynamic_mask(curated: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Eq. 3: ``M[l, n] = 0`` for curated tokens ``n in E^l`` and ``-inf`` otherwise (B, L, N)."""
    mask = torch.zeros(curated.shape, dtype=dtype, device=curated.device)
    return mask.masked_fill(~curated, float("-inf"))


def aggregate_curated_tokens(
    relevance: torch.Tensor,
    vision_tokens: torch.Tensor,
    mask: torch.Tensor | None,
    mean_scale: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5: ``S_norm = softmax(S_c + M)`` over the vision tokens, ``F_a = sum_n S_norm[l, n] F_v[n]``.

    Args:
        relevance: ``S_c`` (B, L, N).
        vision_tokens: ``F_v`` (B, N, D).
        mask: the dynamic mask ``M`` (B, L, N), or ``None`` for the plain softmax (Table 8b "w/o").
        mean_scale: also multiply by the literal ``1 / N_p`` of eq. 5 (``N_p`` = finite entries of ``M``).

    Returns:
        ``(F_a, S_norm)``: (B, L, D) and (B, L, N); ``S_norm`` is exactly 0 outside ``E^l`` and each row sums to 1.
    """
    scores = relevance if mask is None else relevance + mask
    weights = scores.softmax(dim=-1)
    aggregated = weights @ vision_tokens
    if mean_scale:
        count = weights.shape[-1] if mask is None else torch.isfinite(mask).sum(-1, keepdim=True)
        aggregated = aggregated / count
    return aggregated, weights


@dataclass
class VisualExpressionOutput:
    """What :class:`VisualExpressionExtractor` computes (per sample: L cues, N vision tokens, width D).

    Attributes:
        visual_expression: ``Q_V_hat`` (B, L, D); rows that are not cues are zero.
        relevance: ``S_c`` (B, L, N) (eq. 2).
        curated: ``E`` as a bool (B, L, N) mask, True at the curated tokens (all True without curation).
        dynamic_mask: ``M`` (B, L, N), 0 / -inf (eq. 3).
        normalized_scores: ``S_norm`` (B, L, N) (eq. 5).
        aggregated: ``F_a`` (B, L, D) (eq. 5).
        refined: ``F_r`` (B, L, D) (eq. 6).
        refinement_attention: per-head weights (B, heads, L, N) of the dynamic masked cross-attention (eq. 6)
            when requested, else ``None``.
    """

    visual_expression: torch.Tensor
    relevance: torch.Tensor
    curated: torch.Tensor
    dynamic_mask: torch.Tensor
    normalized_scores: torch.Tensor
    aggregated: torch.Tensor
    refined: torch.Tensor
    refinement_attention: torch.Tensor | None = None


class VisualExpressionExtractor(nn.Module):
    """Sec. 3.2: linguistic cues curate, aggregate and refine vision tokens into visual expression tokens.

    Args:
        dim: ``D``, channels of ``F_v`` and ``Q_L_hat``.
        joint_dim: channels of the joint embedding space of ``phi^V`` and ``phi^L`` (eq. 1).
        num_heads, ffn_dim, dropout: of the attention layers of eq. 6 and 7.
        curation_ratio: ``r`` (eq. 2).
        curation: Step 1 of Table 6a; ``False`` keeps every vision token for every cue.
        adaptive_refinement: Step 2 of Table 6a (eq. 6); ``False`` gives ``F_r = F_a``.
        relationship_modeling: Step 3 of Table 6a (eq. 7); ``False`` gives ``Q_V_hat = F_r``.
        dynamic_mask_in_aggregation: Table 8b; ``False`` drops ``M`` from eq. 5's softmax.
        aggregate_mean_scale: the literal ``1 / N_p`` factor of eq. 5.
    """

    def __init__(
        self,
        dim: int,
        joint_dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        curation_ratio: float = 0.3,
        curation: bool = True,
        adaptive_refinement: bool = True,
        relationship_modeling: bool = True,
        dynamic_mask_in_aggregation: bool = True,
        aggregate_mean_scale: bool = False,
    ) -> None:
        super().__init__()
        self.curation_ratio = curation_ratio
        self.curation = curation
        self.dynamic_mask_in_aggregation = dynamic_mask_in_aggregation
        self.aggregate_mean_scale = aggregate_mean_scale
        self.vision_embedding = nn.Linear(dim, joint_dim)  # phi^V (eq. 1)
        self.text_embedding = nn.Linear(dim, joint_dim)  # phi^L (eq. 1)
        self.refinement = (
            AttentionMLPLayer(dim, dim, num_heads, ffn_dim, dropout) if adaptive_refinement else None
        )
        self.relationship = (
            AttentionMLPLayer(dim, dim, num_heads, ffn_dim, dropout) if relationship_modeling else None
        )

    def forward(
        self,
        vision_tokens: torch.Tensor,
        text_tokens: torch.Tensor,
        cue_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> VisualExpressionOutput:
        """Extract ``Q_V_hat``.

        Args:
            vision_tokens: ``F_v`` (B, N, D).
            text_tokens: ``Q_L_hat`` (B, L, D).
            cue_mask: bool (B, L), True for the tokens used as cues ([CLS] = global cue, words = local cues);
                the other rows (padding, or a cue type switched off) neither see nor are seen by any cue and
                their visual expression is zero.
            return_attention: also return the attention weights of eq. 6.
        """
        x = self.vision_embedding(vision_tokens)  # eq. 1
        y = self.text_embedding(text_tokens)
        relevance = relevance_score_map(x, y)  # eq. 2
        if self.curation:
            curated = curate_informative_tokens(relevance, self.curation_ratio)
        else:
            curated = torch.ones_like(relevance, dtype=torch.bool)
        mask = dynamic_mask(curated, relevance.dtype)  # eq. 3
        aggregated, normalized = aggregate_curated_tokens(  # eq. 5
            relevance,
            vision_tokens,
            mask if self.dynamic_mask_in_aggregation else None,
            self.aggregate_mean_scale,
        )
        refined, attention = aggregated, None
        if self.refinement is not None:  # eq. 6: dynamic masked cross-attention
            refined, attention = self.refinement(
                aggregated, vision_tokens, blocked=~curated, return_weights=return_attention
            )
        visual = refined
        if self.relationship is not None:  # eq. 7: visual relationship modelling
            visual, _ = self.relationship(refined, refined, key_padding_mask=~cue_mask)
        visual = visual * cue_mask[..., None].to(visual.dtype)
        return VisualExpressionOutput(
            visual_expression=visual,
            relevance=relevance,
            curated=curated,
            dynamic_mask=mask,
            normalized_scores=normalized,
            aggregated=aggregated,
            refined=refined,
            refinement_attention=attention,
        )
