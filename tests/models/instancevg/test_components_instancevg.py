"""InstanceVG building blocks: each one's math on small hand-computed cases, and its switches."""

import math

import pytest
import torch
from torch.nn import functional as F

from refseg.models.instancevg.heads import (
    BoxHead,
    GlobalMaskHead,
    NoTargetHead,
    instance_mask_logits,
    inverse_sigmoid,
)
from refseg.models.instancevg.instance_query_generator import (
    DynamicPointSelector,
    InstanceQueryGenerator,
    TextToImageDecoder,
    attention_minimap,
    cell_distances,
    text_filter,
)
from refseg.models.instancevg.point_prior_decoder import PointPriorDeformableDecoder
from refseg.models.instancevg.simple_fpn import LayerNorm2d, SimpleFPN
from refseg.models.instancevg.unet_decoder import UNetDecoder


def test_layer_norm_2d_normalises_channels_with_eps_1e5():
    norm = LayerNorm2d(3)
    assert norm.eps == 1e-5
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.tensor([1.0, 2.0, 6.0]).view(1, 3, 1, 1)
    mean, var = 3.0, ((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 3
    expected = (torch.tensor([1.0, 2.0, 6.0]) - mean) / math.sqrt(var + 1e-5) * torch.tensor([1.0, 2.0, 3.0])
    expected += torch.tensor([0.0, 1.0, -1.0])
    torch.testing.assert_close(norm(x).flatten(), expected)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_layer_norm_2d_matches_the_per_pixel_formula_in_both_memory_formats(memory_format):
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 5, 3, 4).contiguous(memory_format=memory_format)
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    expected = norm.weight[:, None, None] * (x - mean) / torch.sqrt(var + 1e-5) + norm.bias[:, None, None]
    out = norm(x)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_simple_fpn_levels_are_channels_last_and_match_the_contiguous_computation():
    fpn = SimpleFPN(16).eval()
    x = torch.randn(2, 16, 4, 4)
    levels = fpn(x)
    assert all(level.is_contiguous(memory_format=torch.channels_last) for level in levels)
    # the same layers applied in the default (NCHW) layout give the same maps up to float rounding
    inputs = (fpn.upsample_4x(x), fpn.upsample_2x(x), x, F.max_pool2d(x, 2))
    for level, y, lateral, output in zip(levels, inputs, fpn.lateral_convs, fpn.output_convs):
        expected = output(lateral(y).contiguous()).contiguous()
        torch.testing.assert_close(level, expected, rtol=1e-5, atol=1e-5)


def test_simple_fpn_levels_and_channels():
    fpn = SimpleFPN(16)
    assert fpn.upsample_4x[3].out_channels == 4 and fpn.upsample_2x[0].out_channels == 8
    levels = fpn(torch.randn(2, 16, 4, 4))
    assert [tuple(x.shape) for x in levels] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4), (2, 16, 2, 2)]
    # level 3 is the input itself through 1x1 then 3x3 conv + LN: zero input gives the LN bias (0)
    assert torch.equal(fpn(torch.zeros(1, 16, 4, 4))[2], torch.zeros(1, 16, 4, 4))


def test_simple_fpn_stride_32_level_is_max_pooled():
    fpn = SimpleFPN(8)
    x = torch.randn(1, 8, 4, 4)
    pooled = F.max_pool2d(x, 2)
    expected = fpn.output_convs[3](fpn.lateral_convs[3](pooled))
    torch.testing.assert_close(fpn(x)[3], expected)


def test_unet_decoder_fuses_top_down_with_aligned_corners():
    decoder = UNetDecoder(4).eval()
    levels = [torch.randn(1, 4, s, s) for s in (16, 8, 4, 2)]
    out = decoder(levels)
    assert out.shape == (1, 4, 16, 16)
    x = levels[3]
    for block, skip in zip(decoder.blocks, (levels[2], levels[1], levels[0])):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = block(torch.cat([x, skip], 1))
    torch.testing.assert_close(out, x)
    assert (out >= 0).all()  # ends with ReLU


def _tokens():
    # 5 tokens, 2 channels; token means: 1, 3, -1, 2, (pad) 10
    feats = torch.tensor([[[0.0, 2.0], [2.0, 4.0], [-1.0, -1.0], [4.0, 0.0], [10.0, 10.0]]])
    padding = torch.tensor([[False, False, False, False, True]])
    return feats, padding


def test_text_filter_mean_topk_in_descending_order():
    feats, padding = _tokens()
    selected, valid = text_filter(feats, padding, 2, "mean")
    torch.testing.assert_close(selected, feats[:, [1, 3]])  # means 3 and 2; the padded token (10) is excluded
    assert valid.all()


def test_text_filter_l2_norm_ranks_by_norm():
    feats, padding = _tokens()
    selected, _ = text_filter(feats, padding, 2, "l2_norm")  # norms 2, 4.47, 1.41, 4
    torch.testing.assert_close(selected, feats[:, [1, 3]])
    selected, _ = text_filter(feats, padding, 1, "l2_norm")
    torch.testing.assert_close(selected, feats[:, [1]])
    feats2 = torch.tensor([[[3.0, -3.0], [1.0, 1.0]]])  # mean 0 vs 1, norm 4.2 vs 1.4
    none = torch.zeros(1, 2, dtype=torch.bool)
    assert torch.equal(text_filter(feats2, none, 1, "mean")[0], feats2[:, [1]])
    assert torch.equal(text_filter(feats2, none, 1, "l2_norm")[0], feats2[:, [0]])


def test_text_filter_fewer_valid_tokens_than_queries_keeps_positions_and_zero_pads():
    feats, padding = _tokens()
    selected, valid = text_filter(feats, padding, 7, "mean")
    assert selected.shape == (1, 7, 2)
    torch.testing.assert_close(selected[:, :4], feats[:, :4])
    assert torch.equal(selected[:, 4:], torch.zeros(1, 3, 2))  # padding zeroed, then zero slots
    assert valid.tolist() == [[True, True, True, True, False, False, False]]


def test_text_filter_none_takes_topk_values_per_channel():
    feats, padding = _tokens()
    selected, valid = text_filter(feats, padding, 2, "none")
    torch.testing.assert_close(selected, torch.tensor([[[10.0, 10.0], [4.0, 4.0]]]))
    assert valid.all()


def test_attention_minimap_max_and_mean_over_valid_slots():
    attention = torch.tensor([[[0.1, 0.9], [0.5, 0.2], [0.9, 0.9]]])
    valid = torch.tensor([[True, True, False]])
    torch.testing.assert_close(attention_minimap(attention, valid, "max"), torch.tensor([[0.5, 0.9]]))
    torch.testing.assert_close(attention_minimap(attention, valid, "mean"), torch.tensor([[0.3, 0.55]]))


def test_point_selector_spreads_points_by_distance():
    # 1 x 5 map: cells 0 and 1 are both high; with a large W_dist the second point goes far away
    logits = torch.tensor([[[3.0, 2.9, 0.0, 0.0, 0.5]]])
    near = DynamicPointSelector(2, distance_weight=0.0).select(logits)
    assert near.tolist() == [[0, 1]]
    far = DynamicPointSelector(2, distance_weight=1.0, normalization="none").select(logits)
    s = torch.sigmoid(torch.tensor([3.0, 2.9, 0.0, 0.0, 0.5]))
    assert float(s[4] + 4) > float(s[1] + 1)  # the greedy criterion of Algorithm 2
    assert far.tolist() == [[0, 4]]


def test_point_selector_diagonal_normalisation_and_exact_rule():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    selector = DynamicPointSelector(6, distance_weight=0.3, normalization="diagonal")
    indices = selector.select(logits)
    # reference: straightforward greedy loop
    diag = math.sqrt(4**2 + 5**2)
    for b in range(2):
        s = logits[b].flatten().sigmoid()
        chosen = [int(s.argmax())]
        for _ in range(5):
            best, best_score = None, -float("inf")
            for cell in range(20):
                if cell in chosen:
                    continue
                r, c = divmod(cell, 5)
                d = min(math.hypot(r - cr, c - cc) for cr, cc in (divmod(x, 5) for x in chosen))
                score = float(s[cell]) + 0.3 * d / diag
                if score > best_score:
                    best, best_score = cell, score
            chosen.append(best)
        assert indices[b].tolist() == chosen


def test_cell_distances_are_the_exact_euclidean_distances_between_cells():
    distances = cell_distances(3, 4)
    assert distances.shape == (12, 12) and distances.dtype == torch.float32
    expected = [[math.hypot(a // 4 - b // 4, a % 4 - b % 4) for b in range(12)] for a in range(12)]
    assert torch.equal(distances, torch.tensor(expected, dtype=torch.float32))
    assert float(distances[0, 11]) == pytest.approx(math.sqrt(2**2 + 3**2))


def test_point_selector_ties_go_to_first_cell_and_points_are_centres():
    logits = torch.zeros(1, 2, 3)  # all equal
    indices, points = DynamicPointSelector(3, distance_weight=0.0)(logits)
    assert indices.tolist() == [[0, 1, 2]]
    torch.testing.assert_close(points, torch.tensor([[[1 / 6, 0.25], [0.5, 0.25], [5 / 6, 0.25]]]))


def test_point_selector_topk_mode():
    logits = torch.tensor([[[0.1, 0.9, 0.3, 0.8]]])
    selector = DynamicPointSelector(2, distance_weight=10.0, mode="topk")
    assert selector.select(logits).tolist() == [[1, 3]]


def test_t2i_decoder_attention_is_a_distribution_and_self_attention_sees_zero_content():
    decoder = TextToImageDecoder(8, 2, 16, dropout=0.0).eval()
    query_pos = torch.randn(2, 3, 8)
    image = torch.randn(2, 5, 8)
    out, attention = decoder(query_pos, image, torch.randn(2, 5, 8))
    assert out.shape == (2, 3, 8) and attention.shape == (2, 3, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 3))
    # content starts at zero: the self-attention output is the constant W_o b_v + b_o for every query
    v_bias = decoder.self_attn.in_proj_bias[16:]
    constant = decoder.self_attn.out_proj(v_bias)
    q = query_pos
    torch.testing.assert_close(decoder.self_attn(q, q, torch.zeros_like(q))[0], constant.expand(2, 3, 8))


def test_instance_query_generator_points_follow_the_minimap():
    torch.manual_seed(0)
    generator = InstanceQueryGenerator(8, 3, num_heads=2, ffn_dim=16, dropout=0.0).eval()
    image = torch.randn(1, 8, 4, 4)
    text = torch.randn(1, 6, 8)
    out = generator(image, text, torch.zeros(1, 6, dtype=torch.bool))
    assert out.queries.shape == (1, 3, 8) and out.minimap.shape == (1, 4, 4)
    assert int(out.point_indices[0, 0]) == int(out.minimap.flatten().argmax())
    row, col = divmod(int(out.point_indices[0, 0]), 4)
    torch.testing.assert_close(out.points[0, 0], torch.tensor([(col + 0.5) / 4, (row + 0.5) / 4]))
    torch.testing.assert_close(out.minimap, out.attention_maps.amax(1))
    # eq. 2: MLP(Concat(decoded token, image feature under the point))
    tokens = image.flatten(2).transpose(1, 2)
    filtered, _ = text_filter(text, torch.zeros(1, 6, dtype=torch.bool), 3)
    pos = generator.position_embedding(image).flatten(2).transpose(1, 2)
    decoded, _ = generator.t2i_decoder(filtered, tokens, pos)
    expected = generator.query_mlp(torch.cat([decoded, tokens[:, out.point_indices[0]]], -1))
    torch.testing.assert_close(out.queries, expected)


@pytest.mark.parametrize("point_prior", [True, False])
def test_point_prior_decoder_reference_points(point_prior):
    torch.manual_seed(0)
    decoder = PointPriorDeformableDecoder(8, 2, 2, 4, 2, 16, 0.0, point_prior=point_prior).eval()
    points = torch.rand(1, 3, 2)
    levels = [torch.randn(1, 8, s, s) for s in (8, 4, 2, 1)]
    states, reference = decoder(torch.randn(1, 3, 8), points, levels)
    assert len(states) == 2 and states[-1].shape == (1, 3, 8)
    learned = decoder.reference_points(decoder.query_pos_embedding(points)).sigmoid()
    torch.testing.assert_close(reference, learned + points if point_prior else learned)


def test_inverse_sigmoid_clamps_references_beyond_the_image():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.7])
    expected = torch.tensor(
        [math.log(1e-3 / 1), math.log(0.25 / 0.75), 0.0, math.log(1 / 1e-3), math.log(1 / 1e-3)]
    )
    torch.testing.assert_close(inverse_sigmoid(x), expected)


def test_box_head_adds_reference_to_the_centre_only():
    head = BoxHead(4)
    states = torch.randn(1, 2, 4)
    reference = torch.tensor([[[0.25, 0.5], [1.5, 0.1]]])
    delta = super(BoxHead, head).forward(states)  # the MLP part
    expected = (delta + torch.cat([inverse_sigmoid(reference), torch.zeros(1, 2, 2)], -1)).sigmoid()
    torch.testing.assert_close(head(states, reference), expected)


def test_mask_heads_shapes_and_einsum():
    states = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    features = torch.arange(8.0).view(1, 2, 2, 2)
    masks = instance_mask_logits(states, features, (2, 2))
    torch.testing.assert_close(masks[0, 0], features[0, 0])
    torch.testing.assert_close(masks[0, 1], 2 * features[0, 1])
    big = instance_mask_logits(states, features, (3, 3))
    assert big[0, 0, 1, 1] == pytest.approx(features[0, 0].mean().item())  # align_corners=True centre
    assert GlobalMaskHead(2)(features, (4, 4)).shape == (1, 4, 4)
    head = NoTargetHead(2)
    torch.testing.assert_close(
        head(features), super(NoTargetHead, head).forward(features.flatten(2).transpose(1, 2)).mean(1)
    )
