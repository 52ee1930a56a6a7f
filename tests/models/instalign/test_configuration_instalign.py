import re

import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import RobertaConfig, SwinConfig

from refseg.models.instalign.configuration_instalign import InstAlignConfig


def test_defaults_are_the_paper_configuration():
    config = InstAlignConfig()
    assert isinstance(config.backbone_config, SwinConfig)
    assert config.backbone_config.embed_dim == 128
    assert list(config.backbone_config.depths) == [2, 2, 18, 2]
    assert list(config.backbone_config.num_heads) == [4, 8, 16, 32]
    assert config.backbone_config.window_size == 12
    assert list(config.backbone_config.out_features) == ["stage1", "stage2", "stage3", "stage4"]
    assert isinstance(config.text_config, RobertaConfig)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (768, 12)
    assert config.text_config.vocab_size == 50265
    assert (config.image_size, config.num_queries, config.num_blocks) == (480, 100, 9)
    assert (config.hidden_dim, config.num_heads, config.ffn_dim, config.pixel_decoder_layers) == (
        256,
        8,
        2048,
        6,
    )
    assert (config.lambda_score, config.lambda_mask, config.lambda_phrase) == (2.0, 5.0, 1.0)
    assert (config.lambda_merged, config.lambda_inst, config.lambda_nt) == (5.0, 1.0, 0.1)
    assert config.instance_supervision == "phrase_aligned"
    assert config.aggregation == "aia_prelu"
    assert config.no_target_input == "global_and_sentence"
    assert config.deep_supervision is True
    assert config.hidden_size == 256 and config.num_hidden_layers == 9  # attribute_map
    assert set(InstAlignConfig.sub_configs) == {"backbone_config", "text_config"}
    assert InstAlignConfig.preset("paper").to_dict() == config.to_dict()


def test_sub_configs_from_dicts():
    config = InstAlignConfig(
        backbone_config={
            "model_type": "swin",
            "embed_dim": 32,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
        },
        text_config={"model_type": "roberta", "hidden_size": 48, "num_attention_heads": 2},
    )
    assert isinstance(config.backbone_config, SwinConfig) and config.backbone_config.embed_dim == 32
    assert isinstance(config.text_config, RobertaConfig) and config.text_config.hidden_size == 48


def test_tiny_preset_and_overrides():
    config = InstAlignConfig.preset("tiny")
    assert config.image_size == 64
    assert config.backbone_config.embed_dim == 16 and list(config.backbone_config.depths) == [1, 1, 1, 1]
    assert config.text_config.num_hidden_layers == 2 and config.text_config.hidden_size == 32
    assert (config.hidden_dim, config.num_queries, config.num_blocks, config.pixel_decoder_layers) == (
        32,
        8,
        3,
        1,
    )

    changed = InstAlignConfig.preset("tiny", num_queries=5, text_config={"num_hidden_layers": 1})
    assert changed.num_queries == 5
    assert changed.text_config.num_hidden_layers == 1 and changed.text_config.hidden_size == 32


def test_demo_preset_is_small():
    config = InstAlignConfig.preset("demo")
    assert 128 <= config.image_size <= 192
    assert config.backbone_config.embed_dim == 32 and list(config.backbone_config.depths) == [1, 1, 2, 1]
    assert config.text_config.num_hidden_layers == 2 and 64 <= config.text_config.hidden_size <= 128
    assert config.hidden_dim == 64 and 16 <= config.num_queries <= 20 and 3 <= config.num_blocks <= 6
    from refseg.data import synthetic_tokenizer
    from refseg.models.instalign.modeling_instalign import InstAlignForReferringSegmentation

    tokenizer = synthetic_tokenizer()
    assert config.text_config.vocab_size == len(tokenizer)
    assert config.text_config.pad_token_id == tokenizer.pad_token_id
    num_parameters = sum(p.numel() for p in InstAlignForReferringSegmentation(config).parameters())
    assert num_parameters * 4 < 9_000_000  # float32 weights leave room under the 10 MB budget


def test_save_and_load_round_trip(tmp_path):
    config = InstAlignConfig.preset("tiny", aggregation="aia", no_target_input="sentence")
    config.save_pretrained(tmp_path)
    loaded = InstAlignConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert isinstance(loaded.backbone_config, SwinConfig) and isinstance(loaded.text_config, RobertaConfig)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_supervision": "phrase"}, "'instance_supervision' expected one of"),
        ({"aggregation": "mean"}, "'aggregation' expected one of"),
        ({"no_target_input": "queries"}, "'no_target_input' expected one of"),
        ({"transformer_decoder": "rela"}, "'transformer_decoder' expected one of"),
        ({"num_queries": 0}, "'num_queries':\n    ValueError: Value must be greater or equal to 1, got 0"),
        ({"num_heads": 5}, "divisible by num_heads"),
        ({"image_size": 100}, "'image_size':\n    ValueError: Value has to be divisible by 32"),
        (
            {"aggregation_threshold": 1.5},
            "'aggregation_threshold':\n    ValueError: Value must be a probability between 0.0 and 1.0",
        ),
        (
            {"lambda_nt": -1.0},
            "'lambda_nt':\n    ValueError: Value must be greater or equal to 0.0, got -1.0",
        ),
    ],
)
def test_invalid_values_name_the_field_and_what_is_allowed(overrides, message):
    with pytest.raises(StrictDataclassError, match=re.escape(message)):
        InstAlignConfig.preset("tiny", **overrides)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        InstAlignConfig.preset("huge")
