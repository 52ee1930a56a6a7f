"""The InstanceVG checkpoint converter and ``refseg convert``: safe loading, key accounting, clear errors."""

import argparse

import pytest
import torch

from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.convert_instancevg import (
    UNUSED_KEYS,
    config_from_state_dict,
    convert_checkpoint,
    convert_state_dict,
    load_original_state_dict,
    state_dict_to_original,
)
from refseg_cli import main


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny")
    model = InstanceVGForReferringSegmentation(config).eval()
    original = state_dict_to_original(model.state_dict(), config.num_queries, config.decoder_layers)
    return model, original


def _save(path, state, prefix=""):
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "epoch": 3}, path)
    return path


def test_original_layout_has_the_released_key_names(reference):
    _, original = reference
    assert "vis_enc.beit3.encoder.layers.0.self_attn.k_proj.A.weight" in original
    assert "head.decoder_transformer.decoder.layers.1.attentions.1.sampling_offsets.weight" in original
    assert "head.query_generation.T2I_decoder.layers.0.attentions.1.attn.in_proj_weight" in original
    assert "head.unet_decoder.bn1_4.running_var" in original and "head.neck.fpn1.3.weight" in original
    assert {f"head.class_embed.{i}.weight" for i in range(2)} <= set(original)
    assert set(UNUSED_KEYS) <= set(original)


def test_round_trip_and_sizes_from_shapes(reference, tmp_path):
    model, original = reference
    converted = convert_state_dict(original)
    assert set(converted) == set(model.state_dict())
    config = config_from_state_dict(original, preset="tiny")
    assert (config.hidden_channels, config.num_queries, config.decoder_layers) == (32, 6, 2)
    assert (config.decoder_num_points, config.t2i_ffn_dim, config.decoder_ffn_dim) == (2, 64, 64)
    assert (config.encoder_config.hidden_size, config.encoder_config.num_hidden_layers) == (32, 2)
    assert (config.image_size, config.encoder_config.vocab_size) == (64, 1000)
    loaded = convert_checkpoint(
        _save(tmp_path / "ckpt.pth", original, "module."), tmp_path / "out", preset="tiny"
    )
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    reloaded = InstanceVGForReferringSegmentation.from_pretrained(tmp_path / "out")
    assert reloaded.config.score_threshold == 0.7


def test_unequal_shared_head_copies_are_rejected(reference):
    _, original = reference
    broken = dict(original)
    broken["head.bbox_embed.1.layers.0.bias"] = original["head.bbox_embed.0.layers.0.bias"] + 1
    with pytest.raises(ValueError, match=r"head\.bbox_embed\.1\.layers\.0\.bias differs"):
        convert_state_dict(broken)


def test_unknown_and_missing_keys_are_named(reference, tmp_path):
    _, original = reference
    extra = dict(original, **{"head.new_module.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"head\.new_module\.weight"):
        convert_state_dict(extra)
    missing = {k: v for k, v in original.items() if k != "head.decoder_transformer.reference_points.bias"}
    with pytest.raises(
        ValueError, match=r"lacks 1 tensor.*head\.decoder_transformer\.reference_points\.bias"
    ):
        convert_checkpoint(_save(tmp_path / "missing.pth", missing), tmp_path / "out", preset="tiny")


def test_unsafe_checkpoints_and_bad_files(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1.0)}, path)  # a pickled training config
    with pytest.raises(ValueError, match="weights_only=True"):
        load_original_state_dict(path)
    with pytest.raises(FileNotFoundError):
        load_original_state_dict(tmp_path / "nope.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not contain a state dict"):
        load_original_state_dict(tmp_path / "list.pth")


def test_cli_convert_and_errors(reference, tmp_path, capsys, beit3_spm):
    _, original = reference
    checkpoint = _save(tmp_path / "ckpt.pth", original)
    code = main(
        [
            "convert",
            "instancevg",
            str(checkpoint),
            "--output",
            str(tmp_path / "out"),
            "--preset",
            "tiny",
            "--tokenizer",
            str(beit3_spm),
            "--config_overrides",
            '{"score_threshold": 0.9}',
        ]
    )
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    assert processor.tokenizer.model_max_length == 12
    assert InstanceVGForReferringSegmentation.from_pretrained(tmp_path / "out").config.score_threshold == 0.9
    code = main(["convert", "instancevg", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x")])
    assert code == 1 and "checkpoint not found" in capsys.readouterr().err
    code = main(
        ["convert", "instancevg", str(checkpoint), "--output", str(tmp_path / "x"), "--config_overrides", "{"]
    )
    assert code == 1 and "not valid JSON" in capsys.readouterr().err
