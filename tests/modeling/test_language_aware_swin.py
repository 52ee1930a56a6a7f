"""Language-aware Swin (LAVT Sec. 3.2-3.3): PWAM, language gates, plain-Swin equivalences, pretrained weights."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from transformers import SwinBackbone, SwinConfig, SwinModel

from refseg.modeling.backbone import VisionBackbone, build_vision_backbone
from refseg.modeling.language_aware_swin import LanguageAwareSwinBackbone
from refseg.modeling.pixel_word_attention import LanguageGate, PixelWordAttention
from refseg.modeling.pretrained import load_pretrained_encoders

TEXT_DIM = 12
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def tiny_swin(**kw) -> SwinConfig:
    kwargs = dict(embed_dim=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8], window_size=4, image_size=64)
    kwargs.update(kw)
    return SwinConfig(**kwargs)


def _text(batch=2, length=5, valid=(5, 3)):
    text = torch.randn(batch, length, TEXT_DIM)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for b, n in enumerate(valid):
        mask[b, :n] = 1
    return text, mask


def _plain(backbone: LanguageAwareSwinBackbone) -> SwinBackbone:
    """A transformers SwinBackbone with the same Swin weights."""
    plain = SwinBackbone(backbone.model.config).eval()
    plain.load_state_dict(backbone.model.state_dict())
    return plain


def _open_gates(backbone, value=0.05):
    with torch.no_grad():
        for gate in backbone.language_gates.values():
            gate.fc2.weight.normal_(0, value)


# ------------------------------------------------------------------------------------------- PWAM
def test_padded_words_get_exactly_zero_attention():
    pwam = PixelWordAttention(16, TEXT_DIM).eval()
    visual = torch.randn(2, 10, 16)
    text, mask = _text()
    _, weights = pwam.word_attention(visual, text, mask)
    assert weights.shape == (2, 1, 10, 5)
    assert torch.all(weights[1, :, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, 10))
    assert torch.all(weights[0] > 0)


def test_padded_word_content_does_not_change_the_output():
    pwam = PixelWordAttention(16, TEXT_DIM, num_heads=2).eval()
    visual = torch.randn(2, 10, 16)
    text, mask = _text()
    other = text.clone()
    other[1, 3:] = 100 * torch.randn(2, TEXT_DIM)
    assert torch.equal(pwam(visual, text, mask), pwam(visual, other, mask))
    changed = text.clone()
    changed[1, 0] += 1.0  # a valid word does change it
    assert not torch.allclose(pwam(visual, text, mask)[1], pwam(visual, changed, mask)[1])


def test_single_word_gets_all_attention_and_output_follows_the_formula():
    pwam = PixelWordAttention(4, TEXT_DIM).eval()
    visual = torch.randn(1, 6, 4)
    text, mask = _text(batch=1, length=3, valid=(1,))
    language, weights = pwam.word_attention(visual, text, mask)
    assert torch.equal(weights[0, 0, :, 0], torch.ones(6))
    # every pixel receives the value of the one word: W_w v + b, instance-normalised over pixels (all equal)
    value = pwam.value_projection(text[0, 0])
    projected = pwam.output_projection(value).expand(1, 6, 4)
    expected = torch.nn.functional.instance_norm(projected.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(language, expected)
    out = pwam(visual, text, mask)
    fused = torch.nn.functional.gelu(pwam.visual_projection(visual)) * language
    torch.testing.assert_close(out, torch.nn.functional.gelu(pwam.multimodal_projection(fused)))


def _reference_pwam(pwam: PixelWordAttention, visual, text, mask):
    """LAVT's PWAM written step by step: ``F.instance_norm`` over the pixels, the output projection applied to
    the attended pixel features (the module applies it to the words instead)."""
    norm = lambda x: F.instance_norm(x.transpose(1, 2), eps=1e-5).transpose(1, 2)  # noqa: E731
    batch, pixels, _ = visual.shape
    words, heads, dim = text.shape[1], pwam.num_heads, pwam.head_dim
    valid = mask.bool()
    keep = valid[:, :, None].to(text.dtype)
    query = norm(pwam.query_projection(visual)).view(batch, pixels, heads, dim).transpose(1, 2)
    key = (pwam.key_projection(text) * keep).view(batch, words, heads, dim).transpose(1, 2)
    value = (pwam.value_projection(text) * keep).view(batch, words, heads, dim).transpose(1, 2)
    scores = (query @ key.transpose(-1, -2) / dim**0.5).masked_fill(~valid[:, None, None], -torch.inf)
    weights = torch.nan_to_num(scores.softmax(-1))  # a sentence without words: all weights 0
    attended = (weights @ value).transpose(1, 2).reshape(batch, pixels, -1)
    language = norm(pwam.output_projection(attended))
    fused = F.gelu(pwam.visual_projection(visual)) * language
    return F.gelu(pwam.multimodal_projection(fused)), language, weights


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_pwam_equals_the_step_by_step_formula_in_values_and_gradients(heads):
    torch.manual_seed(0)
    pwam = PixelWordAttention(16, TEXT_DIM, num_heads=heads)
    visual = torch.randn(3, 30, 16, requires_grad=True)
    text, mask = _text(batch=3, valid=(5, 2, 0))  # the last sentence has no valid word
    language, weights = pwam.word_attention(visual, text, mask)
    expected, expected_language, expected_weights = _reference_pwam(pwam, visual, text, mask)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(language, expected_language, rtol=1e-5, atol=1e-5)
    assert language[2].abs().max() < 1e-4  # IN of a constant map: zero up to rounding
    out = pwam(visual, text, mask)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    probe = torch.randn(out.shape)
    params = [visual, *pwam.parameters()]
    grads = torch.autograd.grad((out * probe).sum(), params)
    expected_grads = torch.autograd.grad((expected * probe).sum(), params)
    for got, want in zip(grads, expected_grads):  # the output bias's true gradient is 0 (IN removes it)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_language_gate_equals_its_formula_in_values_and_gradients():
    gate = LanguageGate(8)
    with torch.no_grad():
        gate.fc2.weight.normal_(0, 0.5)
    x = torch.randn(2, 5, 8, requires_grad=True)
    out = gate(x)
    expected = torch.tanh(F.linear(F.relu(F.linear(x, gate.fc1.weight)), gate.fc2.weight))
    torch.testing.assert_close(out, expected)
    params = [x, gate.fc1.weight, gate.fc2.weight]
    probe = torch.randn(out.shape)
    for got, want in zip(
        torch.autograd.grad((out * probe).sum(), params),
        torch.autograd.grad((expected * probe).sum(), params),
    ):
        torch.testing.assert_close(got, want)


def test_language_gate_is_closed_at_init_but_learns():
    gate = LanguageGate(8)
    x = torch.randn(3, 5, 8)
    assert torch.equal(gate(x), torch.zeros(3, 5, 8))
    assert torch.all(gate.fc2.weight == 0) and gate.fc1.weight.abs().sum() > 0
    (gate(x) * torch.randn(3, 5, 8)).sum().backward()
    assert gate.fc2.weight.grad.abs().sum() > 0  # zeroing both layers would leave this at 0
    with torch.no_grad():
        gate.fc2.weight.fill_(10.0)
    assert gate(x).abs().max() < 1


# ------------------------------------------------------------------------------------------- backbone
def test_shapes_and_interface():
    backbone = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM)
    assert isinstance(backbone, VisionBackbone)
    assert backbone.channels == [16, 32, 64, 128]
    text, mask = _text()
    maps = backbone(torch.randn(2, 3, 64, 96), text, mask)
    assert isinstance(maps, tuple)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 24), (2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)]
    assert sorted(backbone.language_gates) == ["0", "1", "2"]  # ReLA: no gate on the last stage
    assert len(backbone.pixel_word_attention) == 4


def test_fusion_none_is_plain_swin_with_the_same_keys():
    torch.manual_seed(0)
    plain = build_vision_backbone(tiny_swin()).eval()
    none = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM, fusion="none").eval()
    assert none.state_dict().keys() == plain.state_dict().keys()
    none.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(none(x), plain(x)):
            assert torch.equal(a, b)


def test_pwam_adds_fusion_parameters_only():
    plain_keys = set(build_vision_backbone(tiny_swin()).state_dict())
    keys = set(LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM).state_dict())
    assert plain_keys <= keys
    assert all(k.startswith(("pixel_word_attention.", "language_gates.")) for k in keys - plain_keys)


def test_closed_gates_reproduce_plain_swin_exactly():
    backbone = LanguageAwareSwinBackbone(
        tiny_swin(), TEXT_DIM, gate_stages=(0, 1, 2, 3), stage_output="gated"
    ).eval()
    plain = _plain(backbone)
    x = torch.randn(2, 3, 64, 64)
    text, mask = _text()
    with torch.no_grad():
        ours, reference = backbone(x, text, mask), plain(x).feature_maps
    for a, b in zip(ours, reference):
        assert torch.equal(a, b)


def test_fused_outputs_are_pwam_of_the_plain_swin_stream_when_gates_are_closed():
    backbone = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM).eval()
    plain = _plain(backbone)
    x = torch.randn(2, 3, 64, 64)
    text, mask = _text()
    with torch.no_grad():
        maps = backbone(x, text, mask)
        before_downsampling = plain(x, output_hidden_states=True).hidden_states[1:]  # stem first
        for i, (ours, state) in enumerate(zip(maps, before_downsampling)):
            b, c, h, w = state.shape
            tokens = state.flatten(2).transpose(1, 2)
            fused = backbone.pixel_word_attention[i](tokens, text, mask)
            expected = backbone.model.hidden_states_norms[STAGES[i]](fused)
            torch.testing.assert_close(ours, expected.transpose(1, 2).reshape(b, c, h, w), rtol=0, atol=1e-6)


def test_open_gates_carry_the_sentence_into_later_stages():
    backbone = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM, stage_output="gated").eval()
    x = torch.randn(1, 3, 64, 64)
    text, mask = _text(batch=1, valid=(5,))
    other, _ = _text(batch=1, valid=(5,))
    with torch.no_grad():
        # closed gates: the visual stream (and so the last stage, which has no gate) ignores the sentence
        assert torch.equal(backbone(x, text, mask)[3], backbone(x, other, mask)[3])
        _open_gates(backbone)
        assert not torch.allclose(backbone(x, text, mask)[3], backbone(x, other, mask)[3])
        assert not torch.allclose(backbone(x, text, mask)[0], backbone(x, other, mask)[0])


def test_every_fused_map_depends_on_the_sentence_and_padding_is_ignored():
    backbone = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM).eval()
    _open_gates(backbone)
    x = torch.randn(2, 3, 64, 64)
    text, mask = _text()
    padded = text.clone()
    padded[1, 3:] = torch.randn(2, TEXT_DIM)
    changed = text.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        base = backbone(x, text, mask)
        for a, b in zip(base, backbone(x, padded, mask)):
            assert torch.equal(a, b)
        for a, b in zip(base, backbone(x, changed, mask)):
            assert not torch.allclose(a, b)


def test_gradients_reach_swin_fusion_gates_and_text():
    backbone = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM)
    text, mask = _text()
    text.requires_grad_(True)
    maps = backbone(torch.randn(2, 3, 64, 64), text, mask)
    sum((m * torch.randn_like(m)).sum() for m in maps).backward()
    assert text.grad.abs().sum() > 0
    assert backbone.model.swin.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    for gate in backbone.language_gates.values():
        assert gate.fc2.weight.grad.abs().sum() > 0
    for pwam in backbone.pixel_word_attention:
        assert pwam.key_projection.weight.grad.abs().sum() > 0


def test_pretrained_swin_weights_load_unchanged(tmp_path):
    torch.manual_seed(1)
    source = SwinModel(tiny_swin())
    source.save_pretrained(tmp_path / "swin")

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = LanguageAwareSwinBackbone(
                tiny_swin(), TEXT_DIM, gate_stages=(0, 1, 2, 3), stage_output="gated"
            )

    holder = Holder()
    report = load_pretrained_encoders(holder, vision=str(tmp_path / "swin"))["vision"]
    expected = {f"swin.{k}" for k in source.state_dict()}
    assert set(report.loaded_keys) == expected
    state = holder.backbone.model.state_dict()
    for key, value in source.state_dict().items():
        if f"swin.{key}" in state:
            assert torch.equal(state[f"swin.{key}"], value)
    reference = SwinBackbone.from_pretrained(str(tmp_path / "swin"), out_features=STAGES).eval()
    reference.hidden_states_norms.load_state_dict(holder.backbone.model.hidden_states_norms.state_dict())
    x = torch.randn(1, 3, 64, 64)
    text, mask = _text(batch=1, valid=(4,))
    with torch.no_grad():
        for a, b in zip(holder.backbone.eval()(x, text, mask), reference(x).feature_maps):
            assert torch.equal(a, b)


def test_non_swin_backbone_config_is_refused():
    with pytest.raises(ValueError, match="SwinConfig"):
        from transformers import BertConfig

        LanguageAwareSwinBackbone(BertConfig(), TEXT_DIM)


def test_without_the_final_layernorm_the_maps_are_the_same_and_its_parameters_are_gone():
    torch.manual_seed(0)
    with_norm = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM).eval()
    _open_gates(with_norm)
    without = LanguageAwareSwinBackbone(tiny_swin(), TEXT_DIM, final_layernorm=False).eval()
    state = with_norm.state_dict()
    dropped = {k for k in state if ".swin.layernorm." in k}
    assert dropped == {"model.swin.layernorm.weight", "model.swin.layernorm.bias"}
    without.load_state_dict({k: v for k, v in state.items() if k not in dropped})  # strict
    assert set(without.state_dict()) == set(state) - dropped
    counts = [sum(p.numel() for p in m.parameters()) for m in (with_norm, without)]
    assert counts[0] - counts[1] == 2 * 128  # the 8C = 128 channels of the last stage
    pixels, (text, mask) = torch.randn(2, 3, 64, 64), _text()
    with torch.no_grad():
        for a, b in zip(with_norm(pixels, text, mask), without(pixels, text, mask)):
            assert torch.equal(a, b)
