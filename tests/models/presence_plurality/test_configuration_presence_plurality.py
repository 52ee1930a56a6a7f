"""PresencePluralityConfig: the paper's defaults (Sec. 4.2), presets, validation, serialisation."""

import re

import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, BertConfig, SwinConfig

from refseg.models.presence_plurality import PresencePluralityConfig


def test_defaults_are_the_papers():
    config = PresencePluralityConfig()
    assert isinstance(config.backbone_config, SwinConfig) and isinstance(config.text_config, BertConfig)
    swin = config.backbone_config
    assert (swin.embed_dim, list(swin.depths), swin.window_size) == (128, [2, 2, 18, 2], 12)
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (768, 12, 30522)
    assert config.image_size == 480 and config.hidden_dim == 256 and config.pixel_decoder_layers == 6
    assert config.use_target_query and config.use_plurality and config.encoder_fusion == "pwam"
    assert (config.lambda_pixel, config.lambda_presence, config.lambda_plurality) == (1.0, 0.1, 0.01)
    assert config.presence_feature_level == 4 and config.presence_feature_offset == 0
    assert config.presence_threshold == 0.5 and config.mask_threshold == 0.5


@pytest.mark.parametrize("name", ["tiny", "demo", "paper"])
def test_presets_and_overrides(name):
    config = PresencePluralityConfig.preset(name, lambda_plurality=0.5, text_config={"vocab_size": 77})
    assert config.lambda_plurality == 0.5 and config.text_config.vocab_size == 77
    if name == "tiny":
        assert config.image_size == 64 and config.text_config.hidden_size == 32
    with pytest.raises(ValueError, match="unknown preset"):
        PresencePluralityConfig.preset("huge")


def test_round_trip(tmp_path):
    config = PresencePluralityConfig.preset("tiny", pwam_gate_stages=(0, 1, 2, 3), use_plurality=False)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PresencePluralityConfig)
    assert loaded.pwam_gate_stages == [0, 1, 2, 3] and loaded.use_plurality is False
    drop = {"_name_or_path"}
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == {
        k: v for k, v in config.to_dict().items() if k not in drop
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"encoder_fusion": "late"}, "encoder_fusion"),
        ({"pwam_gate_stages": [4]}, "pwam_gate_stages"),
        ({"presence_feature_level": 1}, "presence_feature_level"),
        ({"presence_feature_offset": 2}, "presence_feature_offset"),
        ({"image_size": 100}, "'image_size':\n    ValueError: Value has to be divisible by 32"),
        ({"hidden_dim": 30}, "divisible by num_heads"),
        ({"pixel_class_weights": [1.0]}, "pixel_class_weights"),
        ({"presence_threshold": 2.0}, "presence_threshold"),
        ({"lambda_presence": -1.0}, "lambda_presence"),
        ({"pixel_decoder_layers": 0}, "pixel_decoder_layers"),
    ],
)
def test_invalid_values(overrides, message):
    with pytest.raises(StrictDataclassError, match=re.escape(message)):
        PresencePluralityConfig.preset("tiny", **overrides)
