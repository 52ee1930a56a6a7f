"""Visual Expression Extractor (METRIS Sec. 3.2): eq. 1-3 and 5-7 on hand-computed cases, and its invariances."""

import math

import pytest
import torch
from torch.nn import functional as F

from refseg.models.metris.attention import AttentionMLPLayer
from refseg.models.metris.linguistic_enhancement import LinguisticExpressionEnhancer
from refseg.models.metris.visual_expression_extractor import (
    VisualExpressionExtractor,
    aggregate_curated_tokens,
    curate_informative_tokens,
    dynamic_mask,
    num_curated_tokens,
    relevance_score_map,
)

INF = float("inf")


def manual_attention(mha: torch.nn.MultiheadAttention, query, key_value, additive_mask):
    """Multi-head attention written out for one sample: query (Q, C), key_value (K, C_kv), mask (Q, K)."""
    dim, heads = mha.embed_dim, mha.num_heads
    if mha.in_proj_weight is not None:
        wq, wk, wv = mha.in_proj_weight.split(dim)
    else:
        wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    bq, bk, bv = mha.in_proj_bias.split(dim)
    q = (query @ wq.T + bq).reshape(len(query), heads, -1).transpose(0, 1)
    k = (key_value @ wk.T + bk).reshape(len(key_value), heads, -1).transpose(0, 1)
    v = (key_value @ wv.T + bv).reshape(len(key_value), heads, -1).transpose(0, 1)
    weights = (q @ k.transpose(1, 2) / math.sqrt(dim // heads) + additive_mask).softmax(-1)
    out = (weights @ v).transpose(0, 1).reshape(len(query), dim)
    return mha.out_proj(out), weights


def manual_layer(layer: AttentionMLPLayer, query, key_value, additive_mask):
    """Eq. 6 / 7: ``x = LN(MHA + q)``, ``LN(MLP(x) + x)``."""
    attended, weights = manual_attention(layer.attention, query, key_value, additive_mask)
    x = layer.attention_norm(attended + query)
    return layer.mlp_norm(layer.mlp(x) + x), weights


def test_num_curated_tokens_is_ceil_r_n():
    assert num_curated_tokens(225, 0.3) == 68  # the paper's 15x15 grid at 480x480, r = 30%
    assert num_curated_tokens(10, 0.3) == 3  # 0.3 * 10 is 3.0000000000000004 in floating point
    assert num_curated_tokens(4, 0.3) == 2
    assert num_curated_tokens(5, 1.0) == 5
    assert num_curated_tokens(3, 0.01) == 1


def test_eq2_cosine_relevance_hand_computed():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # X, N = 3
    y = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # Y, L = 2 (norms do not matter)
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[[1.0, 0.0, s], [0.0, 1.0, s]]])
    torch.testing.assert_close(relevance_score_map(x, y), expected)


def test_eq2_eq3_curation_and_dynamic_mask_hand_computed():
    relevance = torch.tensor([[[0.1, 0.9, 0.5, 0.3], [0.8, -0.2, 0.0, 0.7]]])
    curated = curate_informative_tokens(relevance, 0.5)  # N_p = 2
    assert curated.tolist() == [[[False, True, True, False], [True, False, False, True]]]
    mask = dynamic_mask(curated)
    assert mask.tolist() == [[[-INF, 0.0, 0.0, -INF], [0.0, -INF, -INF, 0.0]]]


def test_eq5_aggregation_hand_computed():
    relevance = torch.tensor([[[0.1, 0.9, 0.5, 0.3]]])
    vision = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 4.0], [8.0, 8.0]]])
    mask = dynamic_mask(curate_informative_tokens(relevance, 0.5))
    w1 = math.exp(0.9) / (math.exp(0.9) + math.exp(0.5))
    expected = torch.tensor([[[2.0 * w1, 4.0 * (1 - w1)]]])
    aggregated, weights = aggregate_curated_tokens(relevance, vision, mask)
    torch.testing.assert_close(aggregated, expected)
    torch.testing.assert_close(weights, torch.tensor([[[0.0, w1, 1 - w1, 0.0]]]))
    assert weights[0, 0, 0] == 0 and weights[0, 0, 3] == 0  # exactly zero outside E
    scaled, _ = aggregate_curated_tokens(relevance, vision, mask, mean_scale=True)  # literal 1 / N_p
    torch.testing.assert_close(scaled, expected / 2)
    plain, plain_weights = aggregate_curated_tokens(relevance, vision, None)  # Table 8b "w/o dynamic mask"
    soft = torch.tensor([0.1, 0.9, 0.5, 0.3]).softmax(0)
    torch.testing.assert_close(plain_weights[0, 0], soft)
    torch.testing.assert_close(plain[0, 0], soft @ vision[0])


def _extractor(**kwargs) -> VisualExpressionExtractor:
    torch.manual_seed(0)
    return VisualExpressionExtractor(dim=8, joint_dim=4, num_heads=2, ffn_dim=16, **kwargs).eval()


def _inputs(batch=2, length=5, tokens=12):
    generator = torch.Generator().manual_seed(3)
    vision = torch.randn(batch, tokens, 8, generator=generator)
    text = torch.randn(batch, length, 8, generator=generator)
    cues = torch.ones(batch, length, dtype=torch.bool)
    cues[-1, 3:] = False  # padding
    return vision, text, cues


def test_eq1_to_eq7_full_extractor_against_a_manual_computation():
    extractor = _extractor(curation_ratio=0.25)
    vision, text, cues = _inputs()
    with torch.no_grad():
        out = extractor(vision, text, cues, return_attention=True)
        for b in range(2):
            x = vision[b] @ extractor.vision_embedding.weight.T + extractor.vision_embedding.bias  # eq. 1
            y = text[b] @ extractor.text_embedding.weight.T + extractor.text_embedding.bias
            s = F.cosine_similarity(y[:, None], x[None], dim=-1)  # eq. 2
            torch.testing.assert_close(out.relevance[b], s)
            k = 3  # ceil(0.25 * 12)
            top = s.topk(k, dim=-1).indices
            mask = torch.full_like(s, -INF).scatter(-1, top, 0.0)  # eq. 3
            assert torch.equal(out.dynamic_mask[b], mask)
            f_a = (s + mask).softmax(-1) @ vision[b]  # eq. 5
            torch.testing.assert_close(out.aggregated[b], f_a)
            f_r, weights = manual_layer(extractor.refinement, f_a, vision[b], mask)  # eq. 6
            torch.testing.assert_close(out.refined[b], f_r)
            torch.testing.assert_close(out.refinement_attention[b], weights)
            key_mask = torch.zeros(len(text[b]), len(text[b])).masked_fill(~cues[b][None], -INF)
            q_v, _ = manual_layer(extractor.relationship, f_r, f_r, key_mask)  # eq. 7
            q_v = q_v * cues[b][:, None]
            torch.testing.assert_close(out.visual_expression[b], q_v)
    assert torch.all(out.visual_expression[1, 3:] == 0)  # padded rows are zero


def test_dynamic_mask_invariants_on_the_paper_grid():
    """Every row keeps exactly ceil(r N) keys; S_norm and the eq. 6 attention are exactly 0 outside them."""
    extractor = _extractor(curation_ratio=0.3)
    vision, text, cues = _inputs(tokens=225)
    with torch.no_grad():
        out = extractor(vision, text, cues, return_attention=True)
    assert torch.all(out.curated.sum(-1) == 68)
    assert torch.all(torch.isfinite(out.dynamic_mask).sum(-1) == 68)
    outside = ~out.curated
    assert torch.all(out.normalized_scores[outside] == 0)
    torch.testing.assert_close(out.normalized_scores.sum(-1), torch.ones(2, 5))
    attention = out.refinement_attention  # (B, heads, L, N)
    assert torch.all(attention.masked_select(outside[:, None].expand_as(attention)) == 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 5))
    # the curated keys are the highest-relevance ones
    for b in range(2):
        for cue in range(5):
            kept = out.relevance[b, cue][out.curated[b, cue]]
            dropped = out.relevance[b, cue][~out.curated[b, cue]]
            assert kept.min() >= dropped.max()


def test_padded_tokens_change_nothing_in_the_extractor():
    extractor = _extractor()
    vision, text, cues = _inputs(batch=1)
    padded_text = torch.cat([text, torch.randn(1, 4, 8)], dim=1)
    padded_cues = torch.cat([cues, torch.zeros(1, 4, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = extractor(vision, text, cues)
        long = extractor(vision, padded_text, padded_cues)
    torch.testing.assert_close(long.visual_expression[:, :5], short.visual_expression)
    assert torch.all(long.visual_expression[:, 5:] == 0)


def test_enhanced_linguistic_tokens_are_a_cross_attention_to_vision():
    torch.manual_seed(0)
    enhancer = LinguisticExpressionEnhancer(dim=8, num_layers=2, num_heads=2, ffn_dim=16).eval()
    vision, text, _ = _inputs(batch=1)
    with torch.no_grad():
        out = enhancer(text, vision)
        expected = text[0]
        for layer in enhancer.layers:
            expected, _ = manual_layer(layer, expected, vision[0], torch.zeros(5, 12))
        torch.testing.assert_close(out[0], expected)
        # tokens do not see each other: a token's output does not depend on the others
        torch.testing.assert_close(enhancer(text[:, :2], vision), out[:, :2])
        # and they do read the vision tokens
        assert not torch.allclose(enhancer(text, vision.flip(1) * 2), out)


@pytest.mark.parametrize(
    "switch, check",
    [
        ({"curation": False}, lambda out: bool(out.curated.all()) and bool((out.dynamic_mask == 0).all())),
        ({"adaptive_refinement": False}, lambda out: torch.equal(out.refined, out.aggregated)),
        (
            {"dynamic_mask_in_aggregation": False},
            lambda out: bool((out.normalized_scores > 0).all()) and not bool(out.curated.all()),
        ),
    ],
)
def test_step_switches(switch, check):
    extractor = _extractor(**switch)
    vision, text, cues = _inputs()
    with torch.no_grad():
        out = extractor(vision, text, cues)
    assert check(out)


def test_step3_switch_skips_relationship_modelling():
    extractor = _extractor(relationship_modeling=False)
    assert extractor.relationship is None
    vision, text, cues = _inputs()
    with torch.no_grad():
        out = extractor(vision, text, cues)
    torch.testing.assert_close(out.visual_expression, out.refined * cues[..., None])
    full = _extractor()
    with torch.no_grad():
        assert not torch.allclose(
            full(vision, text, cues).visual_expression, full(vision, text, cues).refined
        )


def test_curation_ratio_sets_the_number_of_curated_tokens():
    vision, text, cues = _inputs(tokens=20)
    for ratio, kept in ((0.1, 2), (0.3, 6), (0.8, 16)):  # Fig. 6
        with torch.no_grad():
            out = _extractor(curation_ratio=ratio)(vision, text, cues)
        assert torch.all(out.curated.sum(-1) == kept)


def test_gradients_reach_both_joint_embeddings():
    extractor = _extractor()
    vision, text, cues = _inputs()
    extractor(vision, text, cues).visual_expression.sum().backward()
    assert extractor.vision_embedding.weight.grad.abs().sum() > 0  # through eq. 5's softmax weights
    assert extractor.text_embedding.weight.grad.abs().sum() > 0
