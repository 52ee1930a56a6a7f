"""BEiT-3 original key mapping, position-table interpolation and the pretraining-checkpoint loader."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from refseg.modeling.beit3 import Beit3Config, Beit3Encoder
from refseg.modeling.beit3.pretrained import (
    beit3_state_dict_from_original,
    beit3_state_dict_to_original,
    interpolate_image_positions,
    load_beit3_pretrained,
)

# The original (torchscale) keys of one layer, in state_dict order, and the non-layer keys.
ORIGINAL_LAYER_KEYS = [
    f"self_attn.{proj}.{expert}.{param}"
    for proj in ("k_proj", "v_proj", "q_proj", "out_proj")
    for expert in "AB"
    for param in ("weight", "bias")
] + [
    f"{name}.{expert}.{param}"
    for name in ("self_attn.inner_attn_ln", "self_attn_layer_norm")
    for expert in "AB"
    for param in ("weight", "bias")
]
ORIGINAL_LAYER_KEYS += [
    f"ffn.{expert}.{name}.{param}"
    for expert in "AB"
    for name in ("fc1", "fc2", "ffn_layernorm")
    for param in ("weight", "bias")
] + [f"final_layer_norm.{expert}.{param}" for expert in "AB" for param in ("weight", "bias")]
ORIGINAL_OTHER_KEYS = [
    "text_embed.weight",
    "vision_embed.mask_token",
    "vision_embed.cls_token",
    "vision_embed.proj.weight",
    "vision_embed.proj.bias",
    "encoder.embed_positions.A.weight",
    "encoder.embed_positions.B.weight",
    "encoder.layer_norm.A.weight",
    "encoder.layer_norm.A.bias",
    "encoder.layer_norm.B.weight",
    "encoder.layer_norm.B.bias",
]


def _encoder(**overrides) -> Beit3Encoder:
    torch.manual_seed(0)
    return Beit3Encoder(Beit3Config.preset("tiny", **overrides)).eval()


def test_key_mapping_covers_every_original_key_and_round_trips():
    encoder = _encoder()
    ours = {key: torch.randn(value.shape) for key, value in encoder.state_dict().items()}
    original = beit3_state_dict_to_original(ours, prefix="vis_enc.beit3.")
    expected = {f"vis_enc.beit3.{key}" for key in ORIGINAL_OTHER_KEYS if key != "vision_embed.mask_token"}
    expected |= {f"vis_enc.beit3.encoder.layers.{i}.{key}" for i in range(2) for key in ORIGINAL_LAYER_KEYS}
    assert len(ORIGINAL_LAYER_KEYS) == 40
    assert set(original) == expected
    back = beit3_state_dict_from_original(original, prefix="vis_enc.beit3.")
    assert list(back) == list(ours)
    assert all(back[key] is ours[key] for key in ours)


@pytest.mark.parametrize(
    ("original", "ours"),
    [
        ("encoder.layers.1.self_attn.q_proj.A.weight", "layers.1.attention.query.vision.weight"),
        ("encoder.layers.0.self_attn.out_proj.B.bias", "layers.0.attention.output.text.bias"),
        (
            "encoder.layers.0.self_attn.inner_attn_ln.A.weight",
            "layers.0.attention.sub_layer_norm.vision.weight",
        ),
        ("encoder.layers.1.self_attn_layer_norm.B.bias", "layers.1.attention_layer_norm.text.bias"),
        ("encoder.layers.0.final_layer_norm.A.weight", "layers.0.feed_forward_layer_norm.vision.weight"),
        ("encoder.layers.1.ffn.B.ffn_layernorm.bias", "layers.1.feed_forward.text.sub_layer_norm.bias"),
        ("encoder.layers.0.ffn.A.fc2.weight", "layers.0.feed_forward.vision.fc2.weight"),
        ("encoder.layer_norm.B.weight", "output_layer_norm.text.weight"),
        ("encoder.embed_positions.A.weight", "image_position_embedding.weight"),
        ("encoder.embed_positions.B.weight", "text_position_embedding.weight"),
        ("vision_embed.proj.weight", "patch_embedding.weight"),
        ("vision_embed.cls_token", "cls_token"),
        ("text_embed.weight", "text_embedding.weight"),
    ],
)
def test_individual_key_names(original, ours):
    tensor = torch.zeros(1)
    assert list(beit3_state_dict_from_original({"beit3." + original: tensor}, "beit3.")) == [ours]


def test_mapping_drops_mask_token_ignores_other_prefixes_and_rejects_unknown_keys():
    tensor = torch.zeros(1)
    mapped = beit3_state_dict_from_original(
        {
            "beit3.vision_embed.mask_token": tensor,
            "beit3.text_embed.weight": tensor,
            "head.weight": tensor,
            "logit_scale": tensor,
        },
        "beit3.",
    )
    assert list(mapped) == ["text_embedding.weight"]
    with pytest.raises(
        ValueError, match=r"not BEiT-3 encoder keys under prefix 'beit3.': beit3.encoder.layers.0.x"
    ):
        beit3_state_dict_from_original({"beit3.encoder.layers.0.x": tensor}, "beit3.")
    with pytest.raises(ValueError, match="no BEiT-3 encoder key"):
        beit3_state_dict_from_original({"head.weight": tensor}, "beit3.")
    with pytest.raises(ValueError, match="not Beit3Encoder keys: head.weight"):
        beit3_state_dict_to_original({"head.weight": tensor})


def test_interpolate_image_positions():
    width, old = 3, 2
    extra = torch.randn(3, width)
    # patch rows depend on the grid row only: after resizing, every grid row is constant along x
    grid = torch.arange(old, dtype=torch.float32)[:, None, None].expand(old, old, width) * 10.0
    table = torch.cat([extra, grid.reshape(old * old, width)])
    resized = interpolate_image_positions(table, 4)
    assert resized.shape == (3 + 16, width)
    assert torch.equal(resized[:3], extra)
    patches = resized[3:].reshape(4, 4, width)
    assert torch.allclose(patches, patches[:, :1].expand(4, 4, width))
    assert patches[0, 0, 0] < patches[3, 0, 0]
    reference = F.interpolate(grid.permute(2, 0, 1)[None], size=(4, 4), mode="bicubic", align_corners=False)[
        0
    ].permute(1, 2, 0)
    torch.testing.assert_close(patches, reference, rtol=0, atol=0)
    assert interpolate_image_positions(table, 2) is table
    with pytest.raises(ValueError, match="square number"):
        interpolate_image_positions(torch.zeros(3 + 5, width), 4)


def _pretraining_checkpoint(encoder: Beit3Encoder, grid: int) -> dict:
    """A checkpoint laid out as BEiT-3's pretraining files: {"model": {"beit3.<original key>": tensor}}."""
    torch.manual_seed(1)
    state = {key: torch.randn(value.shape) for key, value in encoder.state_dict().items()}
    state["image_position_embedding.weight"] = torch.randn(3 + grid * grid, encoder.config.hidden_size)
    model = beit3_state_dict_to_original(state, prefix="beit3.")
    model["beit3.vision_embed.mask_token"] = torch.randn(1, 1, encoder.config.hidden_size)
    model["head.weight"] = torch.randn(5, encoder.config.hidden_size)
    return {"model": model, "epoch": 3}


def test_load_pretrained_with_interpolation(tmp_path):
    encoder = _encoder()
    checkpoint = _pretraining_checkpoint(encoder, grid=2)
    path = tmp_path / "beit3_tiny_patch8_16.pth"
    torch.save(checkpoint, path)
    report = load_beit3_pretrained(encoder, path)
    assert report.interpolated_positions == (2, 4)
    assert sorted(report.ignored_keys) == ["beit3.vision_embed.mask_token", "head.weight"]
    assert len(report.loaded_keys) == len(encoder.state_dict())
    model = checkpoint["model"]
    assert torch.equal(
        encoder.layers[1].attention.query.vision.weight,
        model["beit3.encoder.layers.1.self_attn.q_proj.A.weight"],
    )
    assert torch.equal(encoder.text_embedding.weight, model["beit3.text_embed.weight"])
    table = model["beit3.encoder.embed_positions.A.weight"]
    assert torch.equal(encoder.image_position_embedding.weight, interpolate_image_positions(table, 4))
    out = encoder(torch.randn(1, 3, 32, 32), torch.tensor([[0, 5, 2]]))
    assert torch.isfinite(out.image_tokens).all()


def test_load_pretrained_same_resolution_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    encoder = _encoder()
    model = _pretraining_checkpoint(encoder, grid=4)["model"]
    path = tmp_path / "beit3.safetensors"
    save_file({key: value.contiguous() for key, value in model.items()}, str(path))
    report = load_beit3_pretrained(encoder, path)
    assert report.interpolated_positions is None
    assert torch.equal(
        encoder.image_position_embedding.weight, model["beit3.encoder.embed_positions.A.weight"]
    )


def test_load_pretrained_errors(tmp_path):
    encoder = _encoder()
    model = _pretraining_checkpoint(encoder, grid=4)["model"]
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": model, "args": argparse.Namespace(lr=1.0)}, unsafe)
    with pytest.raises(ValueError, match="not loaded for safety"):
        load_beit3_pretrained(encoder, unsafe)
    partial = tmp_path / "partial.pth"
    torch.save({"model": {k: v for k, v in model.items() if "layers.1." not in k}}, partial)
    with pytest.raises(ValueError, match="lacks BEiT-3 encoder weights: layers.1."):
        load_beit3_pretrained(encoder, partial)
    wider = tmp_path / "wider.pth"
    torch.save(_pretraining_checkpoint(_encoder(hidden_size=64), grid=4), wider)
    with pytest.raises(ValueError, match="does not fit the encoder's config"):
        load_beit3_pretrained(encoder, wider)
    with pytest.raises(FileNotFoundError):
        load_beit3_pretrained(encoder, tmp_path / "missing.pth")
