"""ReLA (GRES, Liu, Ding, Jiang, CVPR 2023) paper wiring: each test fails when one detail of Sec. 3.2-3.3 or of
the released post-processing is wired wrongly (``scripts/dev/inject_regressions.py --model rela``).

The layer and the decoder are recomputed from their weights by hand: which tensor is the query, the key and the
value of each attention, which mask blocks region-image attention, which pixel-decoder level (and level
embedding) a layer reads, and where region-language attention runs (the first layer, as released).
"""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from refseg.models.rela import RelaConfig, RelaForReferringSegmentation, RelaImageProcessor
from refseg.models.rela.criterion import ReLACriterion
from refseg.models.rela.region_decoder import ReLADecoder, ReLALayer, region_attention_mask
from tests.language_fusion_reference import (
    capture_language_fusion,
    check_language_fusion,
    open_language_gates,
)

pytestmark = pytest.mark.usefixtures("single_thread")

HIDDEN, HEADS = 8, 2


def attention(module: nn.MultiheadAttention, query, key, value, blocked=None) -> torch.Tensor:
    """Multi-head attention written out from the module's weights; ``blocked`` ``(B * heads, Lq, Lk)``."""
    w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    b_q, b_k, b_v = module.in_proj_bias.chunk(3)
    heads = module.num_heads
    batch, length, channels = query.shape
    d = channels // heads

    def split(x, w, b):
        return (x @ w.T + b).reshape(batch, x.shape[1], heads, d).transpose(1, 2)

    q, k, v = split(query, w_q, b_q), split(key, w_k, b_k), split(value, w_v, b_v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if blocked is not None:
        scores = scores.masked_fill(blocked.reshape(batch, heads, length, -1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, channels)
    return module.out_proj(out)


def _randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module.eval()


def test_layer_ria_then_region_self_attention_then_ffn_sec_3_2():
    """RIA: q = x + pos_q, k = F + pos_F, v = F, blocked by the mask; RLA (vision): q = k = x + pos_q, v = x;
    FFN; every sub-layer a post-norm residual."""
    layer = _randomised(ReLALayer(HIDDEN, HEADS, ffn_dim=16, dropout=0.0))
    generator = torch.Generator().manual_seed(1)
    x, pos = torch.randn(2, 3, HIDDEN, generator=generator), torch.randn(2, 3, HIDDEN, generator=generator)
    image, image_pos = (
        torch.randn(2, 6, HIDDEN, generator=generator),
        torch.randn(2, 6, HIDDEN, generator=generator),
    )
    blocked = region_attention_mask(torch.randn(2, 3, 2, 3, generator=generator), (2, 3), HEADS)
    assert blocked.any() and not blocked.all(-1).any()
    with torch.no_grad():
        out = layer(x, pos, image, image_pos, blocked)
        ria = attention(layer.region_image_attention, x + pos, image + image_pos, image, blocked)
        x1 = layer.region_image_norm(x + ria)
        x2 = layer.region_norm(x1 + attention(layer.region_attention, x1 + pos, x1 + pos, x1))
        expected = layer.ffn_norm(x2 + layer.ffn[3](F.relu(layer.ffn[0](x2))))
        unmasked = layer(x, pos, image, image_pos, torch.zeros_like(blocked))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, out, atol=1e-3)  # the mask decides the result


def _decoder(num_layers: int = 4) -> ReLADecoder:
    decoder = ReLADecoder(
        hidden_dim=HIDDEN,
        mask_dim=6,
        text_dim=5,
        num_heads=HEADS,
        ffn_dim=16,
        num_layers=num_layers,
        num_queries=4,
        rla_weight=0.1,
    )
    return _randomised(decoder)


def _decoder_inputs():
    generator = torch.Generator().manual_seed(2)
    levels = [torch.randn(2, HIDDEN, s, s + 1, generator=generator) for s in (2, 3, 4)]  # strides 32, 16, 8
    return levels, torch.randn(2, 6, 8, 10, generator=generator), torch.randn(2, 5, 5, generator=generator)


def test_each_layer_reads_its_level_with_level_embedding_and_the_previous_masks_sec_3_2():
    """Layer k attends to level k mod 3 (low resolution first) plus its level embedding, with sine positions on
    the keys, learned positions on the queries, and the masks predicted after the previous step."""
    decoder = _decoder(num_layers=4)
    levels, mask_features, text = _decoder_inputs()
    calls = []
    hooks = [
        layer.region_image_attention.register_forward_pre_hook(
            lambda module, args, kwargs: calls.append((args, kwargs["attn_mask"])), with_kwargs=True
        )
        for layer in decoder.layers
    ]
    try:
        with torch.no_grad():
            out = decoder(levels, mask_features, text)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == 4 and len(out.predictions) == 5
    inputs = [decoder.query_feat.weight.expand(2, -1, -1), *out.hidden_states]
    for k, ((query, key, value), mask) in enumerate(calls):
        level = k % 3
        feature = levels[level]
        tokens = feature.flatten(2).transpose(1, 2)
        torch.testing.assert_close(value, tokens + decoder.level_embed.weight[level])
        sine = decoder.position_embedding(feature).flatten(2).transpose(1, 2)
        torch.testing.assert_close(key, value + sine)
        torch.testing.assert_close(query, inputs[k] + decoder.query_embed.weight)
        previous = out.predictions[k].region_mask_logits
        assert torch.equal(mask, region_attention_mask(previous, feature.shape[-2:], HEADS))
    # the masks change from step to step, so reading another step's masks would be seen
    first = region_attention_mask(out.predictions[0].region_mask_logits, levels[0].shape[-2:], HEADS)
    assert not torch.equal(calls[3][1], first)


def test_region_language_attention_runs_once_right_after_the_first_ria_sec_3_2():
    """As released (the paper's Fig. 3 draws it after the last layer): in layer 0, between RIA and the
    region-region attention, reading the first layer's RIA output and changing what follows."""
    decoder = _decoder(num_layers=3)
    levels, mask_features, text = _decoder_inputs()
    seen, after_ria = [], []
    hooks = [
        decoder.language_attention.register_forward_hook(lambda m, args, out: seen.append((args, out))),
        decoder.layers[0].region_image_norm.register_forward_hook(lambda m, a, out: after_ria.append(out)),
    ]
    try:
        with torch.no_grad():
            out = decoder(levels, mask_features, text)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 1
    (queries, words), updated = seen[0]
    torch.testing.assert_close(queries, after_ria[0])
    assert torch.equal(words, text)
    with torch.no_grad():
        anchor = updated + decoder.query_embed.weight
        layer = decoder.layers[0]
        x = layer.region_norm(updated + attention(layer.region_attention, anchor, anchor, updated))
        expected = layer.ffn_norm(x + layer.ffn[3](F.relu(layer.ffn[0](x))))
    torch.testing.assert_close(out.hidden_states[0], expected, atol=1e-5, rtol=1e-5)


def test_loss_weights_are_distinct_lambdas_inside_lambda_mask_sec_3_3():
    """``L = lambda_mask * (L_mask + lambda_minimap * L_minimap + lambda_nt * L_nt)`` with three different
    weights, so that swapping two of them is seen; the model takes them from its config."""
    torch.manual_seed(0)
    masks, minimap, no_target = torch.randn(2, 2, 4, 4), torch.randn(2, 4, 2), torch.randn(2, 2)
    label = torch.zeros(1, 8, 8)
    label[0, :, 4:] = 1
    labels = [label, torch.zeros(0, 8, 8)]
    reference, terms = ReLACriterion(minimap_size=2)(masks, minimap, no_target, labels)
    loss, same_terms = ReLACriterion(2.0, 0.3, 0.7, minimap_size=2)(masks, minimap, no_target, labels)
    for name, value in terms.items():
        torch.testing.assert_close(same_terms[name], value)  # the weights scale, never change, the terms
    expected = 2.0 * (terms["loss_mask"] + 0.3 * terms["loss_minimap"] + 0.7 * terms["loss_no_target"])
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(
        reference, 5.0 * (terms["loss_mask"] + 0.1 * terms["loss_minimap"] + 0.1 * terms["loss_no_target"])
    )
    config = RelaConfig.preset("tiny", lambda_mask=2.0, lambda_minimap=0.3, lambda_no_target=0.7)
    with torch.device("meta"):
        criterion = RelaForReferringSegmentation(config).criterion
    assert (criterion.lambda_mask, criterion.lambda_minimap, criterion.lambda_no_target) == (2.0, 0.3, 0.7)


def test_language_gates_after_the_first_three_swin_stages_only():
    """The released multimodal Swin gates the fused maps of stages 1-3 back into the visual stream (the last
    stage's fused map goes to the pixel decoder only): ``pwam_gate_stages = (0, 1, 2)``."""
    with torch.device("meta"):
        model = RelaForReferringSegmentation(RelaConfig.preset("tiny"))
        assert sorted(model.model.backbone.language_gates) == ["0", "1", "2"]
        one = RelaForReferringSegmentation(RelaConfig.preset("tiny", pwam_gate_stages=[1]))
        assert sorted(one.model.backbone.language_gates) == ["1"]


def test_language_aware_swin_fuses_every_stage_and_gates_the_first_three_sec_3_1():
    """The released multimodal Swin: PWAM (LAVT eq. 1-3) after every stage, the language gate
    ``V + tanh(W_2 ReLU(W_1 F_m)) * F_m`` after stages 1-3, read with the gates opened (released: closed)."""
    torch.manual_seed(0)
    model = RelaForReferringSegmentation(RelaConfig.preset("tiny")).eval()
    open_language_gates(model.model.backbone)
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(2, 3, 64, 64, generator=generator)
    input_ids = torch.randint(5, 100, (2, 8), generator=generator)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 5:] = 0
    with torch.no_grad(), capture_language_fusion(model.model.backbone) as records:
        model.model(pixel_values, input_ids, attention_mask)
        text = model.model.text_encoder(input_ids, attention_mask)
    assert check_language_fusion(model.model.backbone, records, text, attention_mask) == 3


# --- post-processing -----------------------------------------------------------------------------------------


def _outputs(semantic, no_target):
    return {
        "semantic_mask_logits": torch.as_tensor(semantic, dtype=torch.float32),
        "no_target_logits": torch.tensor(no_target, dtype=torch.float32),
    }


def test_post_processing_resizes_through_the_input_size():
    """The original upsamples the stride-4 logits to the input size, then to the image size (two bilinear
    resizes), and thresholds the sigmoid; one direct resize gives other pixels on this case."""
    generator = torch.Generator().manual_seed(0)
    semantic = torch.randn(1, 4, 4, generator=generator) * 3
    processor = RelaImageProcessor(size=16)
    result = processor.post_process_referring_segmentation(_outputs(semantic, [-3.0]), target_sizes=[(7, 30)])
    two_steps = F.interpolate(semantic[None], size=(16, 16), mode="bilinear", align_corners=False)
    two_steps = F.interpolate(two_steps, size=(7, 30), mode="bilinear", align_corners=False)[0, 0]
    direct = F.interpolate(semantic[None], size=(7, 30), mode="bilinear", align_corners=False)[0, 0]
    expected = two_steps.sigmoid() > 0.5
    assert not torch.equal(expected, direct.sigmoid() > 0.5)
    assert torch.equal(result[0]["mask"], expected)


def test_instances_are_8_connected_components_scored_with_the_target_probability():
    semantic = torch.full((1, 6, 6), -4.0)
    semantic[0, 0:2, 0:2] = 4.0
    semantic[0, 2:4, 2:4] = 4.0  # touches the first square at one corner only: the same 8-connected component
    semantic[0, 5, 5] = 4.0
    result = RelaImageProcessor(size=6).post_process_referring_segmentation(_outputs(semantic, [-0.4]))[0]
    instances = result["instances"]
    assert [inst["box"].tolist() for inst in instances] == [[0, 0, 4, 4], [5, 5, 6, 6]]
    target = 1.0 - torch.sigmoid(torch.tensor(-0.4)).item()  # 0.599, not the no-target probability 0.401
    assert all(inst["score"] == pytest.approx(target, abs=1e-6) for inst in instances)
    assert result["target_score"] == pytest.approx(target, abs=1e-6)
