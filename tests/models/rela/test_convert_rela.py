"""Converting released ReLA checkpoints (detectron2 layout) into ``RelaForReferringSegmentation``."""

import pytest
import torch

from refseg.modeling.pretrained.rela_keys import relative_position_index
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation
from refseg.models.rela.convert_keys import (
    convert_rela_state_dict,
    predictor_key_to_refseg,
    refseg_key_to_predictor,
    rela_state_dict_to_original,
)

# the released configurations built by the original code at full size: keys, parameters and state_dict numel
# (docs/models/rela.md, "Converting the released checkpoints")
RELEASED = {
    "swin-base": (912, 225_521_469, 226_019_133),
    "swin-tiny": (744, 162_560_575, 162_589_387),
    "r50": (766, 153_368_197, 153_474_437),
}


def original_layout(config):
    """The released checkpoint's keys and shapes for ``config`` (refseg model on the meta device, inverted)."""
    with torch.device("meta"):
        model = RelaForReferringSegmentation(config)
    windows = None
    if config.encoder_fusion == "pwam":
        windows = dict.fromkeys(range(4), config.backbone_config.window_size)
    return rela_state_dict_to_original(model.state_dict(), windows)


@pytest.mark.parametrize("preset", sorted(RELEASED))
def test_released_layouts_have_the_originals_key_and_parameter_counts(preset):
    keys, parameters, numel = RELEASED[preset]
    layout = original_layout(RelaConfig.preset(preset))
    assert len(layout) == keys
    assert sum(t.numel() for t in layout.values()) == numel
    # the original's parameters: every tensor but Swin's index buffers and the R-50's frozen batch norms
    buffers = [k for k in layout if k.endswith("relative_position_index") or ".norm." in k and "res" in k]
    buffers += [k for k in layout if k.startswith("backbone.stem.conv1.norm.")]
    assert sum(layout[k].numel() for k in layout if k not in buffers) == parameters
    assert sum(1 for k in layout if k.startswith("sem_seg_head.predictor.")) == 187
    assert sum(1 for k in layout if k.startswith("sem_seg_head.pixel_decoder.")) == 117
    assert sum(1 for k in layout if k.startswith("text_encoder.")) == 197


def test_predictor_names_follow_the_released_decoder():
    pairs = {
        "sem_seg_head.predictor.RIA_layers.3.multihead_attn.in_proj_weight": "decoder.layers.3.region_image_attention.in_proj_weight",
        "sem_seg_head.predictor.RLA_vision.8.norm.bias": "decoder.layers.8.region_norm.bias",
        "sem_seg_head.predictor.transformer_ffn_layers.0.linear2.weight": "decoder.layers.0.ffn.3.weight",
        "sem_seg_head.predictor.RLA_lang_att.multihead_attn.out_proj.bias": "decoder.language_attention.attention.out_proj.bias",
        "sem_seg_head.predictor.lang_weight": "decoder.language_attention.language_weight",
        "sem_seg_head.predictor.level_embed.weight": "decoder.level_embed.weight",
        "sem_seg_head.predictor.nt_embed.layers.1.bias": "decoder.heads.no_target_embed.layers.1.bias",
    }  # fmt: skip
    for original, ours in pairs.items():
        assert predictor_key_to_refseg(original) == ours
        assert refseg_key_to_predictor(ours) == original
    assert predictor_key_to_refseg("sem_seg_head.predictor.RLA_gate.weight") is None  # the `original` branch


def test_inverse_then_convert_gives_the_state_back():
    config = RelaConfig.preset("tiny")
    model = RelaForReferringSegmentation(config)
    state = model.state_dict()
    window = config.backbone_config.window_size
    original = rela_state_dict_to_original(state, dict.fromkeys(range(4), window))
    assert torch.equal(
        original["backbone.layers.0.blocks.0.attn.relative_position_index"], relative_position_index(window)
    )
    back, unexpected = convert_rela_state_dict(original)
    assert unexpected == []
    assert set(state) - set(back) == {
        "model.backbone.model.swin.layernorm.weight",
        "model.backbone.model.swin.layernorm.bias",
    }
    assert all(torch.equal(back[k], state[k]) for k in back)
