"""BEiT-3 multiway encoder: shapes, padding and its trimming, experts, the separate-stream layer against the
reference joint-sequence computation, float32 GELU, position offset, drop path."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError

from refseg.modeling.beit3 import Beit3Config, Beit3Encoder, Beit3Layer
from refseg.modeling.beit3 import model as beit3_module


def _encoder(seed: int = 0, **overrides) -> Beit3Encoder:
    torch.manual_seed(seed)
    encoder = Beit3Encoder(Beit3Config.preset("tiny", **overrides)).eval()
    # random LayerNorm affines and biases so that no parameter is a neutral 1/0
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if name.endswith("bias") or "layer_norm" in name or name == "cls_token":
                parameter.add_(0.1 * torch.randn_like(parameter))
    return encoder


def _inputs(batch: int = 2, length: int = 5, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, 32, 32, generator=generator)
    ids = torch.randint(0, 100, (batch, length), generator=generator)
    return pixels, ids


def test_output_shapes_and_grid():
    encoder = _encoder()
    pixels, ids = _inputs(batch=3, length=6)
    out = encoder(pixels, ids, torch.zeros(3, 6, dtype=torch.bool))
    assert encoder.image_grid_size == (4, 4)
    assert out.cls_token.shape == (3, 32)
    assert out.image_tokens.shape == (3, 16, 32)
    assert out.text_tokens.shape == (3, 6, 32)
    feature_map = out.image_tokens.transpose(1, 2).reshape(3, 32, *encoder.image_grid_size)
    assert torch.equal(feature_map[:, :, 1, 2], out.image_tokens[:, 1 * 4 + 2])


def test_base_and_large_parameter_counts():
    # BEiT-3 base / large of InstanceVG minus the pretraining mask token (D parameters), which the encoder drops
    for name, expected in (("base", 221_144_064 - 768), ("large", 672_911_360 - 1024)):
        with torch.device("meta"):
            encoder = Beit3Encoder(Beit3Config.preset(name))
        assert sum(p.numel() for p in encoder.parameters()) == expected
    assert Beit3Config.preset("base").num_image_positions == 403


def test_padding_does_not_change_valid_outputs():
    encoder = _encoder()
    pixels, ids = _inputs(batch=2, length=5)
    short = encoder(pixels, ids, torch.zeros(2, 5, dtype=torch.bool))
    padded_ids = torch.cat([ids, torch.randint(0, 100, (2, 4))], dim=1)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[:, 5:] = True
    long = encoder(pixels, padded_ids, padding)
    torch.testing.assert_close(long.cls_token, short.cls_token, rtol=0, atol=1e-6)
    torch.testing.assert_close(long.image_tokens, short.image_tokens, rtol=0, atol=1e-6)
    torch.testing.assert_close(long.text_tokens[:, :5], short.text_tokens, rtol=0, atol=1e-6)
    # without the mask the pads would be attended to
    unmasked = encoder(pixels, padded_ids, torch.zeros(2, 9, dtype=torch.bool))
    assert (unmasked.image_tokens - short.image_tokens).abs().max() > 1e-3


def test_padded_embeddings_are_zeroed_before_the_first_layer():
    encoder = _encoder()
    pixels, ids = _inputs(batch=2, length=4)
    padding = torch.tensor([[False, False, True, True], [False, False, False, False]])
    captured = {}
    hook = encoder.layers[0].register_forward_pre_hook(lambda module, args: captured.update(text=args[1]))
    encoder(pixels, ids, padding)
    hook.remove()
    assert captured["text"].shape == (2, 4, 32)
    assert torch.equal(captured["text"][0, 2:], torch.zeros(2, 32))
    assert captured["text"][0, :2].abs().min() > 0 and captured["text"][1].abs().min() > 0


def test_padding_after_the_longest_sentence_is_not_encoded():
    """Columns that are padding in every sample are dropped before the first layer: the outputs of the real
    tokens are bit-identical to encoding the trimmed batch, and the dropped columns come back as zeros."""
    encoder = _encoder()
    pixels, ids = _inputs(batch=2, length=9)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[0, 3:] = True
    padding[1, 6:] = True
    seen = []
    hook = encoder.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[1].shape[1]))
    padded = encoder(pixels, ids, padding)
    trimmed = encoder(pixels, ids[:, :6], padding[:, :6])
    hook.remove()
    assert seen == [6, 6]
    assert padded.text_tokens.shape == (2, 9, 32)
    assert torch.equal(padded.text_tokens[:, 6:], torch.zeros(2, 3, 32))
    assert torch.equal(padded.text_tokens[:, :6], trimmed.text_tokens)
    assert torch.equal(padded.image_tokens, trimmed.image_tokens)
    assert torch.equal(padded.cls_token, trimmed.cls_token)
    # each sample alone, without padding: the same valid outputs (the pads of sample 0 are masked keys)
    for b, length in enumerate((3, 6)):
        alone = encoder(pixels[b : b + 1], ids[b : b + 1, :length])
        torch.testing.assert_close(padded.text_tokens[b, :length], alone.text_tokens[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(padded.image_tokens[b], alone.image_tokens[0], rtol=0, atol=1e-5)


def _perturbed_outputs(path: str, num_layers: int = 1):
    encoder = _encoder(num_hidden_layers=num_layers)
    pixels, ids = _inputs(length=5)
    before = encoder(pixels, ids)
    with torch.no_grad():
        parameter = encoder.get_parameter(path)
        parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    after = encoder(pixels, ids)
    image_changed = max(
        (after.cls_token - before.cls_token).abs().max(),
        (after.image_tokens - before.image_tokens).abs().max(),
    )
    text_changed = (after.text_tokens - before.text_tokens).abs().max()
    return image_changed, text_changed


@pytest.mark.parametrize(
    "block",
    [
        "layers.0.feed_forward.{}.fc2.bias",
        "layers.0.attention.query.{}.bias",
        "layers.0.attention.output.{}.bias",
        "layers.0.feed_forward_layer_norm.{}.weight",
        "layers.0.attention.sub_layer_norm.{}.bias",
        "output_layer_norm.{}.bias",
    ],
)
def test_vision_expert_serves_image_tokens_and_language_expert_text_tokens(block):
    image_changed, text_changed = _perturbed_outputs(block.format("vision"))
    assert image_changed > 1e-3 and text_changed == 0
    image_changed, text_changed = _perturbed_outputs(block.format("text"))
    assert text_changed > 1e-3 and image_changed == 0


def test_shared_attention_mixes_modalities():
    # the keys of text tokens are attended to by image tokens: the language key expert changes image outputs
    image_changed, text_changed = _perturbed_outputs("layers.0.attention.key.text.weight")
    assert image_changed > 1e-4 and text_changed > 1e-4


def test_positions_start_at_row_two():
    encoder = _encoder()
    pixels, ids = _inputs(batch=1, length=3)
    image, text = encoder.embed(pixels, ids)
    assert image.shape[1] == 17 and text.shape[1] == 3
    image_table = encoder.image_position_embedding.weight
    text_table = encoder.text_position_embedding.weight
    assert image_table.shape[0] == 2 + 1 + 16
    torch.testing.assert_close(image[0, 0], encoder.cls_token[0, 0] + image_table[2], rtol=0, atol=0)
    patches = encoder.patch_embedding(pixels).flatten(2).transpose(1, 2)[0]
    torch.testing.assert_close(image[0, 1:], patches + image_table[3:], rtol=0, atol=0)
    embedded_ids = encoder.text_embedding.weight[ids[0]]
    torch.testing.assert_close(text[0], embedded_ids + text_table[2:5], rtol=0, atol=0)
    # rows 0 and 1 of both tables are never read
    before = encoder(pixels, ids)
    with torch.no_grad():
        image_table[:2].fill_(1e3)
        text_table[:2].fill_(1e3)
    after = encoder(pixels, ids)
    for name in ("cls_token", "image_tokens", "text_tokens"):
        assert torch.equal(before[name], after[name])


def _reference_layer(layer: Beit3Layer, x: torch.Tensor, split: int, key_padding_mask: torch.Tensor):
    """The released BEiT-3 layer on the joint sequence ``x`` ``(B, N, D)``, written out: every expert block
    splits the sequence at ``split`` and concatenates the results, queries are scaled before ``q k^T``, padded
    keys get ``-inf``, softmax in float32, drop path on the joint residual branch."""

    def multiway(block, h):
        return torch.cat([block.vision(h[:, :split]), block.text(h[:, split:])], dim=1)

    def drop_path(branch):
        if not layer.training or layer.drop_path_prob == 0:
            return branch
        keep = branch.new_empty(branch.shape[0], 1, 1).bernoulli_(1 - layer.drop_path_prob)
        return branch * keep / (1 - layer.drop_path_prob)

    attention = layer.attention
    batch, length, width = x.shape
    heads, head_dim = attention.num_heads, attention.head_dim

    def split_heads(t):
        return t.view(batch, length, heads, head_dim).transpose(1, 2)

    h = multiway(layer.attention_layer_norm, x)
    q = split_heads(multiway(attention.query, h) * head_dim**-0.5)
    k, v = split_heads(multiway(attention.key, h)), split_heads(multiway(attention.value, h))
    scores = (q @ k.transpose(-1, -2)).masked_fill(key_padding_mask[:, None, None], float("-inf"))
    o = (F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores) @ v).transpose(1, 2)
    o = multiway(attention.output, multiway(attention.sub_layer_norm, o.reshape(batch, length, width)))
    x = x + drop_path(o)
    return x + drop_path(multiway(layer.feed_forward, multiway(layer.feed_forward_layer_norm, x)))


@pytest.mark.parametrize("training", [False, True])
def test_separate_stream_layer_equals_the_joint_sequence_computation(training):
    encoder = _encoder(num_hidden_layers=2, drop_path_rate=0.5)
    layer = encoder.layers[1].train(training)
    generator = torch.Generator().manual_seed(5)
    image, text = torch.randn(3, 17, 32, generator=generator), torch.randn(3, 6, 32, generator=generator)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[0, 2:] = True
    padding[1, 5:] = True
    keys = torch.cat([torch.zeros(3, 17, dtype=torch.bool), padding], dim=1)
    joint = torch.cat([image, text], dim=1)
    torch.manual_seed(11)
    expected = _reference_layer(layer, joint, 17, keys)
    torch.manual_seed(11)
    out_image, out_text = layer(image, text, ~keys[:, None, None, :])
    torch.testing.assert_close(out_image, expected[:, :17], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_text, expected[:, 17:], rtol=1e-5, atol=1e-5)
    if training:  # the drop path really dropped something (the eval result differs)
        assert not torch.allclose(expected, _reference_layer(layer.eval(), joint, 17, keys))
        layer.train()
    # without padding no mask is needed
    torch.manual_seed(11)
    expected = _reference_layer(layer, joint, 17, torch.zeros_like(keys))
    torch.manual_seed(11)
    out_image, out_text = layer(image, text, None)
    torch.testing.assert_close(torch.cat([out_image, out_text], 1), expected, rtol=1e-5, atol=1e-5)


def test_gelu_runs_in_float32_under_bfloat16(monkeypatch):
    """In a bfloat16 encoder the FFN GELU receives float32 (as BEiT-3), and the outputs stay close to the
    float32 encoder's."""
    calls = []

    def gelu(x):
        calls.append(x.dtype)
        return F.gelu(x)

    spy = types.SimpleNamespace(
        gelu=gelu, scaled_dot_product_attention=F.scaled_dot_product_attention, pad=F.pad
    )
    monkeypatch.setattr(beit3_module, "F", spy)
    encoder = _encoder()
    pixels, ids = _inputs()
    reference = encoder(pixels, ids).image_tokens
    calls.clear()
    out = encoder.to(torch.bfloat16)(pixels.to(torch.bfloat16), ids)
    assert out.image_tokens.dtype == torch.bfloat16
    assert calls == [torch.float32] * 4  # 2 layers x 2 experts
    torch.testing.assert_close(out.image_tokens.float(), reference, rtol=0.05, atol=0.1)


def test_drop_path_schedule_and_training_behaviour():
    encoder = _encoder(num_hidden_layers=3, drop_path_rate=0.5)
    assert [layer.drop_path_prob for layer in encoder.layers] == [0.0, 0.25, 0.5]
    assert Beit3Encoder(Beit3Config.preset("tiny", num_hidden_layers=1)).layers[0].drop_path_prob == 0.0
    pixels, ids = _inputs(batch=4)
    eval_out = encoder(pixels, ids).image_tokens
    assert torch.equal(encoder(pixels, ids).image_tokens, eval_out)
    encoder.train()
    assert (encoder(pixels, ids).image_tokens - eval_out).abs().max() > 1e-3
    # per sample, the branch is dropped (0) or kept and rescaled by 1 / (1 - p)
    torch.manual_seed(0)
    scale = beit3_module.sample_keep_scale(64, 0.25, torch.ones(1))
    assert scale.shape == (64, 1, 1)
    assert set(scale.flatten().tolist()) == {0.0, torch.tensor(4.0 / 3.0).item()}
    # a dropped sample loses the branches of its image and its text tokens together
    layer = encoder.layers[2]
    streams = (torch.zeros(64, 3, 2), torch.zeros(64, 2, 2))
    branches = (torch.ones(64, 3, 2), torch.ones(64, 2, 2))
    image, text = layer._add_residuals(streams, branches)
    assert set(image.flatten().tolist()) == {0.0, 2.0}
    assert torch.equal(image[:, :2], text) and torch.equal(image, image[:, :1, :1].expand(64, 3, 2))
    layer.eval()
    assert torch.equal(layer._add_residuals(streams, branches)[0], branches[0])


def test_beit3_initialisation():
    encoder = Beit3Encoder(Beit3Config.preset("tiny", hidden_size=64, num_attention_heads=4))
    weight = encoder.layers[0].attention.query.text.weight
    assert weight.abs().max() <= 0.02 and weight.std() > 0.005
    assert torch.equal(encoder.layers[0].attention.query.text.bias, torch.zeros(64))
    assert torch.equal(encoder.cls_token, torch.zeros(1, 1, 64))
    assert torch.equal(encoder.output_layer_norm.vision.weight, torch.ones(64))


def test_input_validation():
    encoder = _encoder()
    pixels, ids = _inputs()
    with pytest.raises(ValueError, match="fixed image size"):
        encoder(torch.randn(2, 3, 48, 48), ids)
    with pytest.raises(ValueError, match="input_ids must be"):
        encoder(pixels, ids[:1])
    with pytest.raises(ValueError, match="longer than the text position table"):
        encoder(pixels, torch.zeros(2, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="True = padding"):
        encoder(pixels, ids, torch.zeros(2, 5, dtype=torch.long))
    assert encoder(pixels, torch.zeros(2, 14, dtype=torch.long)).text_tokens.shape == (2, 14, 32)


def test_config_presets_and_validation():
    large = Beit3Config.preset("large")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads) == (1024, 24, 16)
    assert large.drop_path_rate == 0.0 and Beit3Config().drop_path_rate == 0.1
    assert Beit3Config().image_grid_size == (20, 20) and Beit3Config().max_text_length == 1022
    assert Beit3Config.preset("tiny", hidden_size=64).hidden_size == 64
    with pytest.raises(
        ValueError, match="unknown preset 'huge'; choose one of \\('base', 'large', 'tiny'\\)"
    ):
        Beit3Config.preset("huge")
    with pytest.raises(StrictDataclassError, match="divisible by num_attention_heads"):
        Beit3Config(hidden_size=30, num_attention_heads=4)
    with pytest.raises(StrictDataclassError, match="multiple of patch_size"):
        Beit3Config(image_size=100)
    with pytest.raises(
        StrictDataclassError,
        match="'max_text_positions':\n    ValueError: Value must be greater than 2, got 2",
    ):
        Beit3Config(max_text_positions=2)
    restored = Beit3Config.from_dict(Beit3Config.preset("tiny").to_dict())
    assert restored.image_size == 32 and restored.model_type == "beit3"


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "beit3" / "beit3_parity.safetensors"


def test_parity_with_the_original_implementation():
    """Outputs of the original InstanceVG / torchscale BEiT-3 on random weights (written by
    scripts/parity/beit3_parity.py): the weights are stored under their original names and mapped here."""
    from safetensors import safe_open

    from refseg.modeling.beit3.pretrained import beit3_state_dict_from_original

    with safe_open(str(FIXTURE), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    encoder = Beit3Encoder(Beit3Config(**json.loads(metadata["config"]))).eval()
    weights = beit3_state_dict_from_original(tensors, metadata["weights_prefix"])
    encoder.load_state_dict(weights, strict=True)
    inputs = {key[len("inputs.") :]: value for key, value in tensors.items() if key.startswith("inputs.")}
    assert inputs["text_padding_mask"].sum(dim=1).tolist() == [0, 3, 6]
    with torch.no_grad():
        out = encoder(**inputs)
    valid = ~inputs["text_padding_mask"]
    torch.testing.assert_close(out.cls_token, tensors["outputs.cls_token"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.image_tokens, tensors["outputs.image_tokens"], rtol=0, atol=1e-5)
    torch.testing.assert_close(
        out.text_tokens[valid], tensors["outputs.text_tokens"][valid], rtol=0, atol=1e-5
    )
