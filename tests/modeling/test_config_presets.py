"""The shared preset machinery and field validators of the configs (``refseg.modeling.config_presets``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from huggingface_hub.errors import StrictDataclassError

from refseg.modeling.config_presets import SWIN_TINY, SYNTHETIC_VOCABULARY, merge_overrides
from refseg.models.instalign.configuration_instalign import InstAlignConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "refseg"


def test_merge_overrides_merges_sub_config_dicts_replaces_other_values_and_copies():
    row = {"hidden_dim": 32, "backbone_config": {"embed_dim": 16, "depths": [1]}, "text_config": {"a": 1}}
    out = merge_overrides(row, {"backbone_config": {"embed_dim": 8}, "text_config": "given", "hidden_dim": 7})
    assert out == {
        "hidden_dim": 7,
        "backbone_config": {"embed_dim": 8, "depths": [1]},
        "text_config": "given",
    }
    out = merge_overrides(row, {})
    out["backbone_config"]["depths"].append(9)
    assert row["backbone_config"]["depths"] == [1]


def test_a_preset_is_a_fresh_copy_of_its_row():
    config = InstAlignConfig.preset("tiny")
    config.backbone_config.depths.append(9)
    assert InstAlignConfig.preset("tiny").backbone_config.depths == [1, 1, 1, 1] == SWIN_TINY["depths"]


def test_unknown_presets_are_named_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of \('paper', 'tiny', 'demo'\)"):
        InstAlignConfig.preset("huge")


def test_the_demo_vocabulary_is_the_synthetic_tokenizers():
    from refseg.data import synthetic_tokenizer

    tokenizer = synthetic_tokenizer()
    assert SYNTHETIC_VOCABULARY == {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def test_config_modules_do_not_import_the_data_layer():
    paths = [SRC / "modeling" / "config_presets.py", SRC / "modeling" / "config_fields.py"]
    paths += sorted(SRC.glob("models/*/configuration_*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "data" not in (node.module or "").split("."), path


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"image_size": 0}, ["'image_size'", "greater or equal to 32", "got 0"]),
        ({"image_size": 100}, ["'image_size'", "divisible by 32", "value=100"]),
        ({"hidden_dim": 33}, ["'hidden_dim'", "divisible by 2"]),
        ({"dropout": 1.0}, ["'dropout'", "greater or equal to 0.0 and smaller than 1.0", "got 1.0"]),
    ],
)
def test_field_errors_name_the_field_and_the_allowed_range(overrides, words):
    with pytest.raises(StrictDataclassError) as error:
        InstAlignConfig.preset("tiny", **overrides)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_valid_boundaries_are_accepted():
    config = InstAlignConfig.preset(
        "tiny", image_size=32, dropout=0.0, aggregation_threshold=1.0, lambda_nt=0
    )
    assert (config.image_size, config.dropout, config.aggregation_threshold) == (32, 0.0, 1.0)
