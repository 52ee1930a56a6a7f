"""ReLA (Liu, Ding, Jiang, CVPR 2023): outputs, loss, save/load and the wiring of the decoder and its heads."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import refseg  # noqa: F401  (registers the Auto classes)
from refseg.modeling.outputs import ReferringSegmentationOutput
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation
from refseg.models.rela.criterion import ReLACriterion, rela_targets
from refseg.models.rela.modeling_rela import RelaOutput
from refseg.models.rela.region_decoder import (
    RegionLanguageAttention,
    ReLAHeads,
    region_attention_mask,
)

SIZE = 64
pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread


def make_inputs(batch=2, length=8, seed=1):
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 3 :] = 0
    return dict(
        pixel_values=torch.randn(batch, 3, SIZE, SIZE, generator=generator),
        input_ids=torch.randint(3, 100, (batch, length), generator=generator),
        attention_mask=attention_mask,
    )


def make_labels():
    """Sample 0: two instances; sample 1: no target."""
    two = torch.zeros(2, SIZE, SIZE)
    two[0, :20, :20] = 1
    two[1, 40:, 36:] = 1
    return [two, torch.zeros(0, SIZE, SIZE)]


def randomise(model: nn.Module, seed: int = 0) -> None:
    """Every tensor random (the released init zeroes the language path, which would hide its wiring)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return RelaForReferringSegmentation(RelaConfig.preset("tiny")).eval()


def test_outputs_follow_the_shared_contract(model):
    with torch.no_grad():
        out = model(**make_inputs())
    assert isinstance(out, RelaOutput) and isinstance(out, ReferringSegmentationOutput)
    queries = model.config.num_queries
    assert out.semantic_mask_logits.shape == (2, SIZE // 4, SIZE // 4)
    assert out.mask_logits.shape == (2, 2, SIZE // 4, SIZE // 4)
    assert out.no_target_logits.shape == (2,) and out.no_target_class_logits.shape == (2, 2)
    assert out.minimap_logits.shape == (2, queries, 2)
    assert out.region_mask_logits.shape == (2, queries, SIZE // 4, SIZE // 4)
    assert len(out.decoder_hidden_states) == model.config.decoder_layers
    # two-way heads report the class-1-minus-class-0 logit
    torch.testing.assert_close(out.semantic_mask_logits, out.mask_logits[:, 1] - out.mask_logits[:, 0])
    torch.testing.assert_close(
        out.no_target_logits, out.no_target_class_logits[:, 1] - out.no_target_class_logits[:, 0]
    )
    assert out.loss is None and out.pred_masks is None and out.pred_boxes is None


def test_loss_and_backward(model):
    model.train()
    try:
        out = model(**make_inputs(), mask_labels=make_labels())
    finally:
        model.eval()
    assert set(out.loss_dict) == {"loss_mask", "loss_minimap", "loss_no_target"}
    assert torch.isfinite(out.loss)
    out.loss.backward()
    decoder_grads = [p.grad for p in model.decoder.parameters() if p.requires_grad]
    assert all(g is not None for g in decoder_grads)
    assert model.decoder.query_feat.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_unknown_keyword_is_refused(model):
    with pytest.raises(TypeError, match="labels"):
        model(**make_inputs(), labels=make_labels())


def test_batch_equals_per_sample(model):
    inputs = make_inputs(batch=2)
    with torch.no_grad():
        both = model(**inputs)
        one = model(**{k: v[1:] for k, v in inputs.items()})
    torch.testing.assert_close(both.mask_logits[1:], one.mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        both.no_target_class_logits[1:], one.no_target_class_logits, atol=1e-4, rtol=1e-4
    )


def test_released_initialisation_closes_the_language_path(model):
    attention = model.decoder.language_attention
    assert (
        torch.all(attention.language_projection.weight == 0)
        and float(attention.language_weight.detach()) == 0.0
    )
    # closed gates; refseg draws W1 (the original zeroes it too, so its gates never receive a gradient)
    for gate in model.model.backbone.language_gates.values():
        assert torch.all(gate.fc2.weight == 0) and gate.fc1.weight.abs().sum() > 0


# --- the heads (Sec. 3.2) -------------------------------------------------------------------------------


def test_target_mask_is_the_raw_minimap_weighted_sum_of_region_masks():
    torch.manual_seed(3)
    heads = ReLAHeads(hidden_dim=8, mask_dim=6, mask_mlp_layers=3, no_target_mlp_layers=2)
    queries, features = torch.randn(2, 4, 8), torch.randn(2, 6, 5, 5)
    out = heads(queries, features)
    regions = F.layer_norm(queries, (8,), heads.decoder_norm.weight, heads.decoder_norm.bias)
    minimap = regions @ heads.minimap_embed.weight.T + heads.minimap_embed.bias
    torch.testing.assert_close(out.minimap_logits, minimap)
    # no softmax: mask of class a = sum_q minimap[q, a] * region_mask[q]
    expected = (minimap[..., None, None] * out.region_mask_logits[:, :, None]).sum(1)
    torch.testing.assert_close(out.target_mask_logits, expected, atol=1e-5, rtol=1e-5)
    # no-target logits: the mean over the regions of the MLP on LN(x)
    torch.testing.assert_close(out.no_target_logits, heads.no_target_embed(regions).mean(1))
    assert heads.mask_embed.layers.__len__() == 3 and len(heads.no_target_embed.layers) == 2


def test_region_attention_mask_blocks_where_the_sigmoid_is_below_one_half():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, -1e-8]], [[-1.0, -2.0], [-3.0, -4.0]]]])  # (1, 2, 2, 2)
    mask = region_attention_mask(logits, (2, 2), num_heads=3)
    assert mask.shape == (3, 2, 4)
    # sigmoid(0) = 0.5 is not blocked; sigmoid(-1e-8) rounds to 0.5 in float32 (logit < 0 would block it)
    assert mask[0, 0].tolist() == [False, True, False, False]
    assert not mask[0, 1].any()  # a region blocked everywhere may attend everywhere
    assert torch.equal(mask[0], mask[2])


def test_region_language_attention_residual_and_no_padding_mask():
    torch.manual_seed(0)
    rla = RegionLanguageAttention(hidden_dim=8, text_dim=6, num_heads=2, rla_weight=0.1, dropout=0.0).eval()
    with torch.no_grad():
        rla.language_projection.weight.normal_()
        rla.language_weight.fill_(0.7)
    queries, words = torch.randn(1, 3, 8), torch.randn(1, 5, 6)
    projected = words @ rla.language_projection.weight.T
    attended = rla.attention(queries, projected, projected)[0]
    expected = queries + 0.1 * math.exp(0.7) / (1 + math.exp(0.7)) * rla.norm(queries + attended)
    torch.testing.assert_close(rla(queries, words), expected)
    changed = words.clone()
    changed[0, -1] += 1.0  # a padded position is still attended (as released)
    assert not torch.allclose(rla(queries, changed), rla(queries, words))


def test_language_attention_runs_in_the_first_layer_only_and_levels_cycle(model):
    calls, key_lengths = [], []
    hooks = [model.decoder.language_attention.register_forward_hook(lambda *a: calls.append(1))]
    for layer in model.decoder.layers:
        hooks.append(
            layer.region_image_attention.register_forward_hook(
                lambda m, args, kwargs=None: key_lengths.append(args[1].shape[1])
            )
        )
    try:
        with torch.no_grad():
            model(**make_inputs())
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [1]
    # level k mod 3: strides 32, 16, 8 at 64x64 -> 2x2, 4x4, 8x8 tokens
    assert key_lengths == [4, 16][: len(model.decoder.layers)]


def test_language_changes_the_output_through_the_decoder_only_for_r50_style_models():
    torch.manual_seed(0)
    config = RelaConfig.preset("tiny", encoder_fusion="none")
    model = RelaForReferringSegmentation(config).eval()
    randomise(model)
    inputs = make_inputs(batch=1)
    other = dict(inputs, input_ids=inputs["input_ids"].flip(-1))
    with torch.no_grad():
        a, b = model.model(**inputs), model.model(**other)
        assert torch.equal(a.mask_features, b.mask_features)  # no language in the encoder
        assert not torch.allclose(model(**inputs).mask_logits, model(**other).mask_logits)


# --- the loss (Sec. 3.3) --------------------------------------------------------------------------------


def test_minimap_target_cell_is_one_only_where_all_sampled_pixels_are_foreground():
    mask = torch.zeros(1, 40, 40)
    mask[0, 9:11, 9:11] = 1
    mask[0, 10, 10] = 0  # cell (0, 0) samples rows/cols 9 and 10: three of four -> 0.75 -> 0
    mask[0, 20:40, 20:40] = 1  # cell (1, 1) fully foreground
    mask[0, 29:31, 0:10] = 1  # cell (1, 0): its four sampled pixels (29-30, 9-10) only half covered
    union, minimap, empty = rela_targets([mask], minimap_size=2)
    assert minimap.tolist() == [[0, 0, 0, 1]]
    assert empty.tolist() == [0] and union.shape == (1, 40, 40)
    assert rela_targets([torch.zeros(0, 40, 40)], 2)[2].tolist() == [1]


def _weighted_ce(logits, target, weights):
    """-sum_i w_{y_i} log softmax(logits_i)[y_i] / sum_i w_{y_i}, over (N, 2) logits."""
    log_p = logits.log_softmax(-1).gather(1, target[:, None])[:, 0]
    w = torch.tensor(weights)[target]
    return -(w * log_p).sum() / w.sum()


def test_criterion_by_hand():
    torch.manual_seed(1)
    criterion = ReLACriterion(lambda_mask=5.0, lambda_minimap=0.1, lambda_no_target=0.1, minimap_size=2)
    masks = torch.randn(2, 2, 4, 4)
    minimap = torch.randn(2, 4, 2)
    no_target = torch.randn(2, 2)
    label = torch.zeros(1, 8, 8)
    label[0, :, 4:] = 1  # right half: cells (0, 1) and (1, 1)
    loss, terms = criterion(masks, minimap, no_target, [label, torch.zeros(0, 8, 8)])
    up = F.interpolate(masks, size=(8, 8), mode="bilinear", align_corners=False)
    union = torch.stack([label[0], torch.zeros(8, 8)]).long()
    w = (0.9, 1.1)
    expected_mask = _weighted_ce(up.permute(0, 2, 3, 1).reshape(-1, 2), union.reshape(-1), w)
    cells = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0]])
    expected_minimap = _weighted_ce(minimap.reshape(-1, 2), cells.reshape(-1), w)
    expected_nt = _weighted_ce(no_target, torch.tensor([0, 1]), w)
    torch.testing.assert_close(terms["loss_mask"], expected_mask)
    torch.testing.assert_close(terms["loss_minimap"], expected_minimap)
    torch.testing.assert_close(terms["loss_no_target"], expected_nt)
    torch.testing.assert_close(loss, 5.0 * (expected_mask + 0.1 * expected_minimap + 0.1 * expected_nt))


# --- configurations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "original", "extra"),
    [
        # the original's counts (its released configs, random weights); equal for the Swins (refseg drops
        # transformers' unused final Swin LayerNorm); refseg counts the ResNet's BatchNorm affine tensors,
        # which the original's FrozenBatchNorm keeps as buffers (2 x 26,560 channels)
        ("swin-base", 225_521_469, 0),
        ("swin-tiny", 162_560_575, 0),
        ("r50", 153_368_197, 2 * 26_560),
    ],
)
def test_parameter_counts_of_the_released_configurations(preset, original, extra):
    with torch.device("meta"):
        model = RelaForReferringSegmentation(RelaConfig.preset(preset))
    assert sum(p.numel() for p in model.parameters()) == original + extra
    assert sum(p.numel() for p in model.decoder.parameters()) == 14_985_733


def test_config_rules():
    with pytest.raises(Exception, match="square"):
        RelaConfig(num_queries=50)
    with pytest.raises(Exception, match="ResNet"):
        RelaConfig.preset("r50", encoder_fusion="pwam")
    with pytest.raises(Exception, match="dropout"):
        RelaConfig(dropout=1.0)
    with pytest.raises(ValueError, match="unknown preset"):
        RelaConfig.preset("swin-large")
    config = RelaConfig()
    assert (config.decoder_layers, config.num_queries, config.minimap_size, config.max_text_length) == (
        9,
        100,
        10,
        20,
    )
    assert config.class_weights == [0.9, 1.1] and config.lambda_mask == 5.0
