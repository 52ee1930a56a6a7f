"""Presence & plurality model (Kim et al., AAAI 2026): eq. 1-5, Table 2 switches, invariances, save/load."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from torch.nn import functional as F

import refseg  # noqa: F401  (registers the Auto classes)
from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.models.presence_plurality.modeling_presence_plurality import (
    PADDING_LOGIT,
    PresencePluralityOutput,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread

SIZE = 64


def make_inputs(batch=2, length=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    input_ids = torch.randint(3, 100, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 3 :] = 0
    pixel_mask = torch.ones(batch, SIZE, SIZE, dtype=torch.long)
    pixel_mask[-1, :, 48:] = 0  # a letterboxed (wide-padded) last image
    return dict(
        pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, pixel_mask=pixel_mask
    )


def make_labels():
    """Sample 0: two instances (plural); sample 1: no target."""
    two = torch.zeros(2, SIZE, SIZE)
    two[0, :20, :20] = 1
    two[1, 40:, 40:] = 1
    return [two, torch.zeros(0, SIZE, SIZE)]


def build(**overrides):
    torch.manual_seed(0)
    return PresencePluralityForReferringSegmentation(
        PresencePluralityConfig.preset("tiny", **overrides)
    ).eval()


@pytest.fixture(scope="module")
def model():
    return build()


def test_output_shapes_and_fields(model):
    with torch.no_grad():
        out = model(**make_inputs())
    assert isinstance(out, PresencePluralityOutput) and out.loss is None
    assert out.logits.shape == (2, 2, SIZE, SIZE)
    assert out.presence_logits.shape == (2, 2) and out.plurality_logits.shape == (2, 2)
    assert out.semantic_mask_logits.shape == (2, SIZE, SIZE)
    assert out.target_query_states.shape == (3, 2, 32)  # e_0, e_1, e_2 (L = 2)
    torch.testing.assert_close(out.no_target_logits, out.presence_logits[:, 0] - out.presence_logits[:, 1])
    torch.testing.assert_close(
        out.semantic_mask_logits[0], out.logits[0, 1] - out.logits[0, 0]
    )  # sigmoid(difference) = softmax foreground probability
    assert torch.all(out.semantic_mask_logits[1, :, 48:] == PADDING_LOGIT)
    assert out.pred_masks.shape == (2, 1, SIZE, SIZE) and out.pred_scores.shape == (2, 1)


def test_defaults_build_the_paper_architecture():
    config = PresencePluralityConfig()
    with torch.device("meta"):
        model = PresencePluralityForReferringSegmentation(config)
    backbone = model.model.backbone
    assert backbone.channels == [128, 256, 512, 1024] and backbone.fusion == "pwam"
    swin = sum(p.numel() for p in backbone.model.parameters())
    assert 86e6 < swin < 89e6  # Swin-B, the paper's 87.7M
    assert model.model.text_encoder.hidden_size == 768
    assert len(model.model.pixel_decoder.layers) == 6 and len(model.target_query.visual_cross_attention) == 6
    assert model.criterion.lambda_presence == 0.1 and model.criterion.lambda_plurality == 0.01


def test_initialisation_keeps_closed_gates_and_the_deformable_grid(model):
    for gate in model.model.backbone.language_gates.values():
        assert torch.all(gate.fc2.weight == 0) and gate.fc1.weight.std() > 0
    attention = model.model.pixel_decoder.layers[0].self_attn
    assert torch.all(attention.sampling_offsets.weight == 0)
    assert attention.sampling_offsets.bias.abs().sum() > 0  # Deformable DETR's direction grid


# -------------------------------------------------------------------------- eq. 3 (plurality) / eq. 4 (presence)
def test_plurality_depends_on_the_text_only_and_presence_on_both(model):
    inputs = make_inputs()
    other_image = dict(inputs, pixel_values=torch.randn_like(inputs["pixel_values"]))
    other_text = dict(inputs, input_ids=(inputs["input_ids"] + 1) % 100)
    with torch.no_grad():
        base, image, text = model(**inputs), model(**other_image), model(**other_text)
    assert torch.equal(base.plurality_logits, image.plurality_logits)  # eq. 3: e_0 reads f^T only
    assert torch.equal(base.target_query_states[0], image.target_query_states[0])
    assert not torch.allclose(base.presence_logits, image.presence_logits)
    assert not torch.allclose(base.plurality_logits, text.plurality_logits)


def _recorded_memories(model, inputs):
    seen = []
    handles = [
        block.register_forward_hook(lambda module, args, out: seen.append(args[1]))
        for block in model.target_query.visual_cross_attention
    ]
    with torch.no_grad():
        states = model.model(**{k: v for k, v in inputs.items()}, return_dict=True)
        model(**inputs)
    for handle in handles:
        handle.remove()
    return seen, states


@pytest.mark.parametrize("offset", [0, 1])
def test_presence_path_reads_the_stride32_slice_of_the_right_decoder_states(offset):
    model = build(presence_feature_offset=offset)
    inputs = make_inputs()
    seen, states = _recorded_memories(model, inputs)
    h, w = states.decoder_spatial_shapes[0]
    assert (h, w) == (SIZE // 32, SIZE // 32) and states.decoder_level_start_index[0] == 0
    hidden = states.decoder_hidden_states  # f_0, f_1, f_2
    assert len(seen) == 2 and all(m.shape == (2, h * w, 32) for m in seen)
    for layer, memory in enumerate(seen):
        assert torch.equal(memory, hidden[layer + offset][:, : h * w])
    if offset == 0:  # literal eq. 4: the final state f_L, which the mask head uses, is never read
        assert not any(torch.equal(m, hidden[-1][:, : h * w]) for m in seen)


def test_stride32_slice_has_h_times_w_tokens_at_480():
    model = build(image_size=480, backbone_config={"window_size": 12, "image_size": 384}).eval()
    sliced, position, padding = model.presence_inputs(
        type(
            "Fake",
            (),
            dict(
                decoder_level_start_index=[0, 225, 1125],
                decoder_spatial_shapes=[(15, 15), (30, 30), (60, 60)],
                decoder_hidden_states=tuple(torch.zeros(1, 4725, 32) for _ in range(3)),
                decoder_position_embeddings=torch.zeros(1, 4725, 32),
                decoder_padding_mask=None,
            ),
        )()
    )
    assert [s.shape[1] for s in sliced] == [225, 225] and position.shape[1] == 225 and padding is None


def test_presence_feature_level_selects_another_slice():
    model = build(presence_feature_level=3)
    seen, states = _recorded_memories(model, make_inputs())
    start = states.decoder_level_start_index[1]
    h, w = states.decoder_spatial_shapes[1]
    assert torch.equal(seen[0], states.decoder_hidden_states[0][:, start : start + h * w])


def test_padded_words_do_not_change_any_output(model):
    inputs = make_inputs()
    changed = inputs["input_ids"].clone()
    changed[-1, -3:] = 5  # padded positions of the last sentence
    with torch.no_grad():
        a, b = model(**inputs), model(**dict(inputs, input_ids=changed))
    for key in ("logits", "presence_logits", "plurality_logits"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


def test_mask_head_mlp_on_upsampled_features(model):
    inputs = make_inputs()
    with torch.no_grad():
        out = model(**inputs)
        features = model.model(**inputs).mask_features
        up = F.interpolate(features, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        expected = model.mask_head(up.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.logits, expected)
    cheap = build(mask_head_at_full_resolution=False)
    cheap.load_state_dict(model.state_dict())
    with torch.no_grad():
        low = cheap.mask_head(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(
            cheap(**inputs).logits,
            F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False),
        )


def _upsample_then_mlp(head, features, size):
    """The reference full-resolution head: bilinear upsampling, then every layer of the MLP."""
    hidden = F.interpolate(features, size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    for layer in head:
        hidden = F.relu(hidden) if isinstance(layer, torch.nn.ReLU) else layer(hidden)
    return hidden.permute(0, 3, 1, 2)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("size", [(32, 32), (21, 30)])
def test_fast_full_resolution_head_equals_upsampling_first(layers, size):
    """``mask_logits`` projects before upsampling (they commute); values and gradients must be the reference's."""
    model = build(mask_mlp_layers=layers).train()
    features = torch.randn(2, model.config.mask_dim, 8, 8, requires_grad=True)
    reference_features = features.detach().clone().requires_grad_(True)
    fast = model.mask_logits(features, size)
    reference = _upsample_then_mlp(model.mask_head, reference_features, size)
    assert fast.shape == (2, 2, *size)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    weights = torch.randn(fast.shape)
    fast_grads = torch.autograd.grad((fast * weights).sum(), [features, *model.mask_head.parameters()])
    reference_grads = torch.autograd.grad(
        (reference * weights).sum(), [reference_features, *model.mask_head.parameters()]
    )
    for got, expected in zip(fast_grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------- eq. 5 and inference (Sec. 3.4)
def test_loss_is_eq5_with_the_paper_weights(model):
    inputs, labels = make_inputs(), make_labels()
    with torch.no_grad():
        out = model(**inputs, mask_labels=labels)
    terms = out.loss_dict
    expected = terms["loss_pixel"] + 0.1 * terms["loss_presence"] + 0.01 * terms["loss_plurality"]
    torch.testing.assert_close(out.loss, expected)
    # presence: sample 0 present (1), sample 1 absent (0), class weights (0.9, 1.1)
    w = torch.tensor([0.9, 1.1])
    logp = out.presence_logits.log_softmax(-1)
    manual = -(1.1 * logp[0, 1] + 0.9 * logp[1, 0]) / (1.1 + 0.9)
    torch.testing.assert_close(terms["loss_presence"], manual)
    # plurality: the no-target sample is ignored, sample 0 is plural
    torch.testing.assert_close(terms["loss_plurality"], -out.plurality_logits.log_softmax(-1)[0, 1])
    # pixel: weighted CE over valid pixels only
    target = torch.stack([labels[0].amax(0), torch.zeros(SIZE, SIZE)]).long()
    target[1, :, 48:] = -100
    torch.testing.assert_close(
        terms["loss_pixel"], F.cross_entropy(out.logits, target, weight=w, ignore_index=-100)
    )


def test_padded_pixels_get_no_loss(model):
    inputs, labels = make_inputs(), make_labels()
    noisy = [labels[0], torch.zeros(1, SIZE, SIZE)]
    noisy[1][0, :, 48:] = 1  # an "instance" entirely in the padding of image 1
    with torch.no_grad():
        a = model(**inputs, mask_labels=labels).loss_dict["loss_pixel"]
        b = model(**inputs, mask_labels=noisy).loss_dict["loss_pixel"]
    torch.testing.assert_close(a, b)


def test_no_target_samples_contribute_nothing_to_the_plurality_loss():
    model = build()
    inputs = make_inputs()
    only_empty = [torch.zeros(0, SIZE, SIZE), torch.zeros(0, SIZE, SIZE)]
    out = model(**inputs, mask_labels=only_empty)
    assert out.loss_dict["loss_plurality"] == 0
    out.loss.backward()  # still differentiable
    labelled = build(plurality_ignore_no_target=False)
    with torch.no_grad():
        out = labelled(**inputs, mask_labels=only_empty)
    torch.testing.assert_close(
        out.loss_dict["loss_plurality"], F.cross_entropy(out.plurality_logits, torch.zeros(2).long())
    )


def test_inference_empties_the_mask_when_presence_says_nothing():
    model = build()
    inputs = make_inputs()
    with torch.no_grad():
        model.mask_head[-1].bias.copy_(torch.tensor([-5.0, 5.0]))  # foreground everywhere
        model.presence_head[-1].bias.copy_(torch.tensor([0.0, 20.0]))  # present
        present = model(**inputs)
        model.presence_head[-1].bias.copy_(torch.tensor([20.0, 0.0]))  # absent
        absent = model(**inputs)
    assert not present.no_target.any() and present.final_masks[0].all()
    assert not present.final_masks[1, :, 48:].any()  # letterbox padding is never foreground
    assert absent.no_target.all() and not absent.final_masks.any()
    assert torch.equal(present.logits, absent.logits)  # the raw mask is kept; only the decision changes


# -------------------------------------------------------------------------- Table 2 switches
def test_without_target_query_presence_reads_pooled_mask_features():
    model = build(use_target_query=False, use_plurality=False)
    assert not hasattr(model, "target_query") and model.plurality_head is None
    inputs = make_inputs()
    seen = []
    model.presence_head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        out = model(**inputs, mask_labels=make_labels())
        features = model.model(**inputs).mask_features
    assert out.plurality_logits is None and out.target_query_states is None
    assert set(out.loss_dict) == {"loss_pixel", "loss_presence"}
    torch.testing.assert_close(seen[0][0], features[0].mean(dim=(1, 2)))
    valid = features[1, :, :, :12]  # 48 of 64 columns are image: 12 of the 16 stride-4 columns
    torch.testing.assert_close(seen[0][1], valid.mean(dim=(1, 2)))


def test_without_plurality_head():
    model = build(use_plurality=False)
    assert model.plurality_head is None
    with torch.no_grad():
        out = model(**make_inputs(), mask_labels=make_labels())
    assert out.plurality_logits is None and "loss_plurality" not in out.loss_dict
    assert out.target_query_states.shape[0] == 3


def test_plurality_needs_the_target_query():
    with pytest.raises(StrictDataclassError, match="use_plurality=True needs use_target_query=True"):
        PresencePluralityConfig.preset("tiny", use_target_query=False)


def test_plain_swin_encoder_ignores_the_text_in_the_mask_path():
    model = build(encoder_fusion="none")
    assert not hasattr(model.model.backbone, "pixel_word_attention")
    inputs = make_inputs()
    with torch.no_grad():
        a = model.model(**inputs).mask_features
        b = model.model(**dict(inputs, input_ids=(inputs["input_ids"] + 1) % 100)).mask_features
    assert torch.equal(a, b)


def test_language_aware_encoder_conditions_the_mask_on_the_text(model):
    inputs = make_inputs()
    with torch.no_grad():
        a = model.model(**inputs).mask_features
        b = model.model(**dict(inputs, input_ids=(inputs["input_ids"] + 1) % 100)).mask_features
    assert not torch.allclose(a, b)


# -------------------------------------------------------------------------- training, inputs, loading
def test_unknown_kwargs_and_bad_inputs(model):
    inputs = make_inputs()
    with pytest.raises(TypeError, match="unexpected keyword argument.*image_indices"):
        model(**inputs, image_indices=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(**dict(inputs, pixel_values=torch.randn(2, 3, 60, 64), pixel_mask=None))
    with pytest.raises(ValueError, match="one sentence per image"):
        model(**dict(inputs, input_ids=inputs["input_ids"][:1], attention_mask=None))
    with pytest.raises(ValueError, match="pixel_mask must be"):
        model(**dict(inputs, pixel_mask=torch.ones(2, 32, 32)))
    with pytest.raises(ValueError, match="mask_labels"):
        model(**inputs, mask_labels=[torch.zeros(1, 32, 32), torch.zeros(0, 32, 32)])
