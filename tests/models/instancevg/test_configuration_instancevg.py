"""InstanceVGConfig: released defaults, presets, switches and validation; parameter count of the official model."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from refseg.modeling.beit3 import Beit3Config
from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation


def test_defaults_are_the_released_grefcoco_model():
    config = InstanceVGConfig()
    assert isinstance(config.encoder_config, Beit3Config)
    encoder = config.encoder_config
    assert (encoder.hidden_size, encoder.num_hidden_layers, encoder.num_attention_heads) == (768, 12, 12)
    assert (encoder.vocab_size, encoder.image_size, encoder.patch_size, encoder.drop_path_rate) == (
        64010,
        320,
        16,
        0.1,
    )
    assert (config.image_size, config.hidden_channels, config.num_queries, config.max_text_length) == (
        320,
        256,
        10,
        50,
    )
    assert (
        config.decoder_layers,
        config.decoder_num_heads,
        config.decoder_num_points,
        config.decoder_ffn_dim,
    ) == (
        3,
        8,
        4,
        1024,
    )
    assert (config.t2i_num_heads, config.t2i_ffn_dim, config.dropout) == (8, 512, 0.1)
    # code, not the paper's text
    assert (config.text_filter, config.minimap_reduction, config.distance_normalization) == (
        "mean",
        "max",
        "diagonal",
    )
    assert (config.distance_weight, config.score_threshold, config.aux_loss_weighting) == (
        0.003,
        0.7,
        "unweighted",
    )
    assert (config.cost_class, config.cost_bbox, config.cost_giou, config.cost_point) == (1.0, 5.0, 2.0, 2.0)
    assert (config.detr_loss_weight, config.negative_mask_weight, config.no_target_loss_weight) == (
        0.1,
        0.2,
        0.2,
    )
    assert config.no_target_class_weights == [0.9, 1.1] and config.mask_merge == "merge"
    assert config.grid_size == 20 and config.hidden_size == 256
    assert InstanceVGConfig.preset("b-grefcoco").to_dict() == config.to_dict()
    assert InstanceVGConfig.preset("b-refzom").to_dict() == config.to_dict()


def test_refcoco_presets():
    base = InstanceVGConfig.preset("b-refcoco")
    assert (base.num_queries, base.negative_mask_weight, base.max_text_length) == (1, 0.0, 20)
    large = InstanceVGConfig.preset("l-refcoco")
    assert (large.encoder_config.hidden_size, large.encoder_config.num_hidden_layers) == (1024, 24)
    assert large.encoder_config.num_attention_heads == 16 and large.encoder_config.drop_path_rate == 0.0


def test_preset_overrides_and_text_config_vocab():
    config = InstanceVGConfig.preset("tiny", text_config={"vocab_size": 77, "pad_token_id": 1}, num_queries=3)
    assert config.encoder_config.vocab_size == 77 and config.num_queries == 3
    config = InstanceVGConfig.preset("tiny", image_size=128)
    assert config.encoder_config.image_size == 128 and config.grid_size == 16


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"text_filter": "norm"}, "text_filter"),
        ({"point_selection": "random"}, "point_selection"),
        ({"mask_merge": "union"}, "mask_merge"),
        ({"aux_loss_weighting": "half"}, "aux_loss_weighting"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"hidden_channels": 30}, "hidden_channels"),
        ({"image_size": 60}, "image_size"),
        ({"cost_point": -1}, "cost_point"),
        ({"no_target_class_weights": [1.0]}, "no_target_class_weights"),
    ],
)
def test_invalid_values_are_named(overrides, message):
    with pytest.raises(StrictDataclassError, match=message):
        InstanceVGConfig.preset("tiny", **overrides)
    with pytest.raises(ValueError, match="unknown preset"):
        InstanceVGConfig.preset("huge")


def test_save_and_load(tmp_path):
    config = InstanceVGConfig.preset("tiny", text_filter="l2_norm", score_threshold=0.9)
    config.save_pretrained(tmp_path)
    loaded = InstanceVGConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert isinstance(loaded.encoder_config, Beit3Config) and loaded.encoder_config.hidden_size == 32


def test_official_parameter_count_on_meta_device():
    """234,336,716 (the released gRefCOCO model) minus the unused tensors the port does not keep:
    query_embedding 196,608 + query_generation.query_embed 2,560 + level_embeds 1,024 +
    proj_pixel_level_cons 66,049 + BEiT-3's mask_token 768."""
    with torch.device("meta"):
        model = InstanceVGForReferringSegmentation(InstanceVGConfig.preset("b-grefcoco"))
    assert sum(p.numel() for p in model.parameters()) == 234_336_716 - 196_608 - 2_560 - 1_024 - 66_049 - 768
    assert sum(b.numel() for b in model.buffers()) == 3_078  # the UNet's BatchNorm statistics
