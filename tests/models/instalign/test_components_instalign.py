import math

import pytest
import torch

from refseg.models.instalign.aggregation import EMPTY_LOGIT, AdaptiveInstanceAggregation
from refseg.models.instalign.heads import InstancePredictionHeads
from refseg.models.instalign.no_target import NoTargetPredictor, sentence_feature
from refseg.models.instalign.object_text_attention import ObjectTextCrossAttention
from refseg.models.instalign.phrase_object_alignment import PhraseObjectAlignment
from refseg.models.instalign.phrase_object_transformer import PhraseObjectTransformer, masked_attention_mask


def test_phrase_object_alignment_two_tokens_two_queries():
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    text = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    relevance, phrases, cost = PhraseObjectAlignment()(queries, text)
    # eq. 1: logits Q T^T / sqrt(2) = [[sqrt2, 0], [0, sqrt2]]
    high = math.exp(math.sqrt(2)) / (math.exp(math.sqrt(2)) + 1)
    expected_r = torch.tensor([[[high, 1 - high], [1 - high, high]]])
    torch.testing.assert_close(relevance, expected_r)
    # eq. 2: P = R T
    torch.testing.assert_close(phrases, torch.tensor([[[2 * high, 2 - 2 * high], [2 - 2 * high, 2 * high]]]))
    # eq. 3: 1 - cos(P_i, Q_i) = 1 - r_ii / ||r_i||
    expected_cost = 1 - high / math.sqrt(high**2 + (1 - high) ** 2)
    torch.testing.assert_close(cost, torch.full((1, 2), expected_cost))


def test_phrase_object_alignment_ignores_padding():
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    text = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [50.0, -7.0]]])
    mask = torch.tensor([[1, 1, 0]])
    relevance, phrases, cost = PhraseObjectAlignment()(queries, text, mask)
    ref_r, ref_p, ref_cost = PhraseObjectAlignment()(queries, text[:, :2])
    assert torch.all(relevance[..., 2] == 0)
    torch.testing.assert_close(relevance[..., :2], ref_r)
    torch.testing.assert_close(phrases, ref_p)
    torch.testing.assert_close(cost, ref_cost)


def test_aggregation_eq8_with_prelu_slope():
    score_logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    masks = torch.tensor([[[[2.0]], [[-4.0]]]])  # (1, 2, 1, 1)
    prelu = AdaptiveInstanceAggregation("aia_prelu")
    assert prelu.activation.weight.item() == pytest.approx(0.25)
    # 0.5 * 2 + 0.75 * (0.25 * -4) = 0.25
    torch.testing.assert_close(prelu(masks, score_logits), torch.tensor([[[0.25]]]))
    with torch.no_grad():
        prelu.activation.weight.fill_(0.5)  # learned slope is used: 1 + 0.75 * (-2) = -0.5
    torch.testing.assert_close(prelu(masks, score_logits), torch.tensor([[[-0.5]]]))
    # without PReLU: 0.5 * 2 + 0.75 * -4 = -2
    torch.testing.assert_close(
        AdaptiveInstanceAggregation("aia")(masks, score_logits), torch.tensor([[[-2.0]]])
    )


def test_aggregation_threshold_selects_union_or_empty():
    score_logits = torch.tensor([[0.0, math.log(3.0), 5.0]])  # p = 0.5, 0.75, 0.993
    masks = torch.tensor([[[[2.0, -1.0]], [[-4.0, 3.0]], [[1.0, -6.0]]]])
    merged = AdaptiveInstanceAggregation("threshold", threshold=0.6)(masks, score_logits)
    torch.testing.assert_close(merged, torch.tensor([[[1.0, 3.0]]]))  # max over instances 2 and 3
    empty = AdaptiveInstanceAggregation("threshold", threshold=0.999)(masks, score_logits)
    torch.testing.assert_close(empty, torch.full((1, 1, 2), EMPTY_LOGIT))


def test_no_target_inputs_eq10_eq11():
    queries = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    score_logits = torch.tensor([[0.0, math.log(3.0)]])
    text = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    q_global = torch.tensor([[0.5 * 1 + 0.75 * 3, 0.5 * 2 + 0.75 * 4]])  # eq. 10
    t_sen = torch.tensor([[2.0, 1.0]])  # mean over real tokens
    torch.testing.assert_close(sentence_feature(text, mask), t_sen)
    expected = {
        "global_and_sentence": torch.cat([q_global, t_sen], -1),  # eq. 11
        "global": q_global,
        "sentence": t_sen,
        "mean_queries": torch.tensor([[2.0, 3.0]]),
    }
    for name, value in expected.items():
        predictor = NoTargetPredictor(2, name)
        torch.testing.assert_close(predictor.build_input(queries, score_logits, text, mask), value)
        logits = predictor(queries, score_logits, text, mask)
        assert logits.shape == (1,)
        torch.testing.assert_close(logits, predictor.mlp(value).squeeze(-1))


def test_prediction_heads_eq4():
    heads = InstancePredictionHeads(hidden_dim=4, mask_dim=3)
    queries = torch.randn(2, 5, 4)
    pixels = torch.randn(2, 3, 6, 7)
    normed, scores, masks = heads(queries, pixels)
    assert scores.shape == (2, 5) and masks.shape == (2, 5, 6, 7)
    embed = heads.mask_embed(heads.norm(queries))
    manual = (embed[0, 1][:, None, None] * pixels[0]).sum(0)  # s_hat = V_4 . Q^T at every pixel
    torch.testing.assert_close(masks[0, 1], manual)
    torch.testing.assert_close(scores, heads.score_head(normed).squeeze(-1))


def test_object_text_attention_is_bidirectional_and_masks_padding():
    layer = ObjectTextCrossAttention(hidden_dim=8, num_heads=2).eval()
    queries, text = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask = torch.tensor([[1, 1, 1, 0]])
    q1, t1 = layer(queries, text, mask)
    assert q1.shape == (1, 3, 8) and t1.shape == (1, 4, 8)
    changed = text.clone()
    changed[0, 3] = 100.0
    q2, t2 = layer(queries, changed, mask)
    torch.testing.assert_close(q2, q1)  # padding token is never read by the queries
    torch.testing.assert_close(t2[:, :3], t1[:, :3])  # nor does it change the other words
    q3, t3 = layer(queries + 1.0, text, mask)
    assert not torch.allclose(t3, t1)  # words read the objects


def test_masked_attention_mask():
    logits = torch.full((1, 2, 2, 2), -5.0)
    logits[0, 0, 0, 0] = 5.0  # query 0: only the top-left pixel is foreground
    blocked = masked_attention_mask(logits, (2, 2), num_heads=2)
    assert blocked.shape == (2, 2, 4)
    assert blocked[0, 0].tolist() == [False, True, True, True]
    assert blocked[0, 1].tolist() == [False, False, False, False]  # empty mask: attend everywhere
    assert torch.equal(blocked[0], blocked[1])
    fine = torch.full((1, 1, 4, 4), -5.0)
    fine[0, 0, :2, :2] = 5.0  # resized (bilinear) to 2x2: only the top-left cell stays foreground
    assert masked_attention_mask(fine, (2, 2), num_heads=1)[0, 0].tolist() == [False, True, True, True]


def test_phrase_object_transformer_round_robin_over_scales():
    transformer = PhraseObjectTransformer(
        hidden_dim=8, num_heads=2, ffn_dim=16, num_queries=3, num_blocks=4, mask_dim=8
    )
    sizes = []
    for block in transformer.blocks:
        block.visual_attention.register_forward_hook(lambda m, args, out: sizes.append(args[1].shape[1]))
    features = [torch.randn(1, 8, 2, 2), torch.randn(1, 8, 4, 4), torch.randn(1, 8, 8, 8)]
    output = transformer(features, torch.randn(1, 8, 16, 16), torch.randn(1, 5, 8), torch.ones(1, 5))
    assert sizes == [4, 16, 64, 4]  # blocks cycle over strides 32, 16, 8
    assert len(output.predictions) == 5  # learned queries + 4 blocks
    last = output.last
    assert last.mask_logits.shape == (1, 3, 16, 16) and last.score_logits.shape == (1, 3)
    assert last.relevance.shape == (1, 3, 5) and last.phrase_cost.shape == (1, 3)


def test_text_conditioned_score_adds_the_query_sentence_term():
    torch.manual_seed(0)
    plain = InstancePredictionHeads(hidden_dim=4, mask_dim=3)
    assert plain.score_query_proj is None  # the paper's head has no extra parameters
    heads = InstancePredictionHeads(hidden_dim=4, mask_dim=3, text_conditioned_score=True)
    heads.score_head.load_state_dict(plain.score_head.state_dict())
    heads.norm.load_state_dict(plain.norm.state_dict())
    with torch.no_grad():
        heads.score_query_proj.weight.copy_(torch.eye(4))
        heads.score_query_proj.bias.zero_()
        heads.score_text_proj.weight.copy_(2 * torch.eye(4))
        heads.score_text_proj.bias.zero_()
    queries = torch.randn(1, 3, 4)
    sentence = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    _, base, _ = plain(queries, None)
    _, conditioned, _ = heads(queries, None, sentence)
    normed = torch.nn.functional.layer_norm(queries, (4,))  # affine is identity at init
    expected = base + (normed * 2 * sentence[:, None]).sum(-1) / math.sqrt(4)
    torch.testing.assert_close(conditioned, expected)


def test_text_conditioned_score_changes_with_the_sentence_only_when_enabled():
    torch.manual_seed(0)
    kwargs = dict(hidden_dim=8, num_heads=2, ffn_dim=16, num_queries=3, num_blocks=1, mask_dim=8)
    features = [torch.randn(1, 8, s, s) for s in (2, 4, 8)]
    mask_features = torch.randn(1, 8, 16, 16)
    text_a, text_b = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    mask = torch.ones(1, 5)
    model = PhraseObjectTransformer(**kwargs, text_conditioned_score=True).eval()
    with torch.no_grad():
        # the learned queries (prediction 0) have not read the text yet: only the new term can tell a from b
        first_a = model(features, mask_features, text_a, mask).predictions[0].score_logits
        first_b = model(features, mask_features, text_b, mask).predictions[0].score_logits
    assert not torch.allclose(first_a, first_b)
    plain = PhraseObjectTransformer(**kwargs).eval()
    with torch.no_grad():
        first_a = plain(features, mask_features, text_a, mask).predictions[0].score_logits
        first_b = plain(features, mask_features, text_b, mask).predictions[0].score_logits
    torch.testing.assert_close(first_a, first_b)
