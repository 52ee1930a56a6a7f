"""The converter refuses what it cannot convert faithfully, with one plain line, and writes nothing then.

Partial checkpoints (a missing or extra layer), contradicting ``--config_overrides``, transposed tensors,
NaN/inf weights and unusable tokenizers are all refused before anything is written; the output folder is
written next to the destination and renamed at the end.
"""

import json

import pytest
import torch

from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.convert_instancevg import convert_checkpoint, state_dict_to_original
from refseg_cli import main
from tests.models.instancevg.spm_helpers import train_sentencepiece

ENCODER_LAYER = "vis_enc.beit3.encoder.layers."
DECODER_LAYER = "head.decoder_transformer.decoder.layers."


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny")
    model = InstanceVGForReferringSegmentation(config).eval()
    return state_dict_to_original(model.state_dict(), config.num_queries, config.decoder_layers)


def _save(path, state):
    torch.save({"state_dict": dict(state), "epoch": 9}, path)
    return path


def _refused(tmp_path, capsys, state, *extra, name="ckpt.pth"):
    """Run ``refseg convert`` on ``state``; assert exit 1, no output folder, no leftovers; return the line."""
    checkpoint = _save(tmp_path / name, state)
    code = main(
        [
            "convert",
            "instancevg",
            str(checkpoint),
            "--output",
            str(tmp_path / "out" / "model"),
            "--preset",
            "tiny",
        ]
        + list(extra)
    )
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "\n" not in err and "\x1b" not in err and "weights_only=False" not in err, err
    assert not (tmp_path / "out" / "model").exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    return err


def _without(state, prefix):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def test_a_checkpoint_missing_its_last_encoder_layer_is_refused(original, tmp_path, capsys):
    err = _refused(tmp_path, capsys, _without(original, ENCODER_LAYER + "1."))
    assert "lacks encoder layer(s) 1" in err and "tiny preset has 2 encoder layers" in err


def test_a_checkpoint_missing_its_last_decoder_layer_is_refused(original, tmp_path, capsys):
    err = _refused(tmp_path, capsys, _without(original, DECODER_LAYER + "1."))
    assert "lacks decoder layer(s) 1" in err and "2 decoder layers" in err


def test_an_extra_encoder_layer_is_refused(original, tmp_path, capsys):
    extra = dict(original)
    extra.update(
        {
            k.replace(ENCODER_LAYER + "1.", ENCODER_LAYER + "2."): v
            for k, v in original.items()
            if k.startswith(ENCODER_LAYER + "1.")
        }
    )
    err = _refused(tmp_path, capsys, extra)
    assert "extra encoder layer(s) 2" in err


def test_a_missing_tensor_inside_a_layer_is_named(original, tmp_path, capsys):
    key = ENCODER_LAYER + "0.ffn.B.fc2.bias"
    err = _refused(tmp_path, capsys, {k: v for k, v in original.items() if k != key})
    assert key in err


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"num_queries": 4}, "head.query_generation.query_embed.weight"),
        ({"decoder_layers": 3}, "3 decoder layers"),
        ({"encoder_config": {"num_hidden_layers": 3}}, "3 encoder layers"),
        ({"hidden_channels": 64}, "contradicts the weights"),
    ],
)
def test_config_overrides_that_contradict_the_weights_are_refused(
    original, tmp_path, capsys, overrides, words
):
    err = _refused(tmp_path, capsys, original, "--config_overrides", json.dumps(overrides))
    assert "--config_overrides" in err and "contradicts the weights" in err and words in err


def test_an_unknown_override_field_is_refused(original, tmp_path, capsys):
    err = _refused(tmp_path, capsys, original, "--config_overrides", '{"num_querys": 6}')
    assert "unknown InstanceVG config field(s): num_querys" in err


def test_overrides_that_agree_with_the_weights_convert(original, tmp_path):
    shallow = _without(original, ENCODER_LAYER + "1.")
    path = _save(tmp_path / "shallow.pth", shallow)
    model = convert_checkpoint(
        path, tmp_path / "out", preset="tiny", config_overrides={"encoder_config": {"num_hidden_layers": 1}}
    )
    assert model.config.encoder_config.num_hidden_layers == 1


@pytest.mark.parametrize(
    "key",
    [
        ENCODER_LAYER + "0.ffn.A.fc1.weight",
        "vis_enc.beit3.text_embed.weight",
        "head.query_generation.query_embed.weight",
        DECODER_LAYER + "1.ffns.0.layers.1.weight",
    ],
)
def test_a_transposed_tensor_blames_its_key(original, tmp_path, capsys, key):
    broken = dict(original)
    broken[key] = original[key].t().contiguous()
    err = _refused(tmp_path, capsys, broken)
    assert err.startswith(f"refseg convert: error: {key} has shape {tuple(broken[key].shape)}"), err
    assert "transposed" in err


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_checkpoints_are_refused_as_such(original, tmp_path, capsys, value):
    full = {k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in original.items()}
    err = _refused(tmp_path, capsys, full)
    assert "NaN or infinite values" in err and "differs" not in err
    one = dict(original, **{"head.class_embed.1.bias": torch.tensor([value, 0.0])})
    err = _refused(tmp_path, capsys, one)
    assert "NaN or infinite values in 1 of" in err and "head.class_embed.1.bias" in err


def test_a_tokenizer_with_more_pieces_than_the_text_table_is_refused(tmp_path, capsys, beit3_spm):
    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny", encoder_config={"vocab_size": 30})
    small = state_dict_to_original(
        InstanceVGForReferringSegmentation(config).state_dict(), config.num_queries, config.decoder_layers
    )
    err = _refused(
        tmp_path,
        capsys,
        small,
        "--config_overrides",
        '{"encoder_config": {"vocab_size": 30}}',
        "--tokenizer",
        str(beit3_spm),
    )
    assert "more than the 30 rows" in err and "beit3.spm" in err


def _bad_tokenizer(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nowhere" / "beit3.spm"
    if kind == "bytes":
        path = tmp_path / "garbage.spm"
        path.write_bytes(bytes(range(256)) * 8)
        return path
    if kind == "text":
        path = tmp_path / "notes.spm"
        path.write_text("this is a text file, not a model\n")
        return path
    return train_sentencepiece(tmp_path / "bpe.spm", model_type="bpe")


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("bytes", "is not a sentencepiece model"),
        ("text", "is not a sentencepiece model"),
        ("bpe", "is a BPE sentencepiece model, not a Unigram one"),
    ],
)
def test_bad_tokenizers_are_refused_before_anything_is_written(original, tmp_path, capsys, kind, words):
    err = _refused(tmp_path, capsys, original, "--tokenizer", str(_bad_tokenizer(tmp_path, kind)))
    assert words in err and "--tokenizer" in err


def test_an_error_while_writing_leaves_no_folder(original, tmp_path, monkeypatch):
    from refseg.models.instancevg import convert_instancevg

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(convert_instancevg.InstanceVGImageProcessor, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(_save(tmp_path / "ckpt.pth", original), tmp_path / "out", preset="tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


def test_destination_rules(original, tmp_path):
    checkpoint = _save(tmp_path / "ckpt.pth", original)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds other files"):
        convert_checkpoint(checkpoint, tmp_path / "mine", preset="tiny")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    convert_checkpoint(checkpoint, tmp_path / "out", preset="tiny")
    (tmp_path / "out" / "stale.txt").write_text("from the previous conversion")
    convert_checkpoint(checkpoint, tmp_path / "out", preset="tiny")  # a previous conversion is replaced
    assert (
        not (tmp_path / "out" / "stale.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "mine", "out"]


def test_a_folder_converted_without_tokenizer_says_so_in_the_pipeline(original, tmp_path):
    from transformers import pipeline

    import refseg  # noqa: F401 - registers the task

    convert_checkpoint(_save(tmp_path / "ckpt.pth", original), tmp_path / "out", preset="tiny")
    with pytest.raises(Exception) as info:
        pipeline("referring-segmentation", model=str(tmp_path / "out"))
    message = str(info.value)
    assert "has no tokenizer" in message and "--tokenizer" in message and "\n" not in message


@pytest.mark.parametrize("preset", ["b-grefcoco", "b-refcoco", "l-refcoco"])
def test_released_sizes_infer_their_preset_and_a_missing_last_layer_is_named(preset):
    from refseg.models.instancevg.convert_checks import expected_layout
    from refseg.models.instancevg.convert_instancevg import config_from_state_dict

    config = InstanceVGConfig.preset(preset)
    state = {k: torch.zeros(()).expand(shape) for k, shape in expected_layout(config).items()}  # no memory
    assert config_from_state_dict(state).to_dict() == config.to_dict()
    last = config.encoder_config.num_hidden_layers - 1
    partial = _without(state, f"{ENCODER_LAYER}{last}.")
    with pytest.raises(
        ValueError, match=rf"lacks encoder layer\(s\) {last} .*{preset} preset has {last + 1} encoder"
    ):
        config_from_state_dict(partial)
    partial = _without(state, f"{DECODER_LAYER}2.")
    with pytest.raises(
        ValueError, match=rf"lacks decoder layer\(s\) 2 .*{preset} preset has 3 decoder layers"
    ):
        config_from_state_dict(partial)


def test_cli_reports_a_write_error_in_one_line_and_leaves_no_folder(original, tmp_path, capsys, monkeypatch):
    from refseg.models.instancevg import convert_instancevg

    def fail(self, *args, **kwargs):
        raise OSError("[Errno 28] No space left on device:\n  \x1b[1mmodel.safetensors\x1b[0m")

    monkeypatch.setattr(convert_instancevg.InstanceVGForReferringSegmentation, "save_pretrained", fail)
    err = _refused(tmp_path, capsys, original)
    assert err == "refseg convert: error: [Errno 28] No space left on device: model.safetensors"


# A model of another width than the released ones (reduced or custom): its shapes become the config, with the
# overrides supplying what shapes cannot tell; partial files, contradicting overrides and damaged tensors are
# refused all the same.
HEADS = {
    "encoder_config": {"num_attention_heads": 4},
    "t2i_num_heads": 4,
    "decoder_num_heads": 4,
    "max_text_length": 12,
    "dropout": 0.0,
}


def _custom(tmp_path, capsys, state, overrides=HEADS):
    checkpoint = _save(tmp_path / "custom.pth", state)
    code = main(
        ["convert", "instancevg", str(checkpoint), "--output", str(tmp_path / "out" / "model")]
        + ["--config_overrides", json.dumps(overrides)]
    )
    err = capsys.readouterr().err.strip()
    return code, err


def test_a_custom_size_model_takes_its_sizes_from_the_weights(original, tmp_path, capsys):
    code, err = _custom(tmp_path, capsys, original)
    assert code == 0, err
    config = InstanceVGForReferringSegmentation.from_pretrained(tmp_path / "out" / "model").config
    tiny = InstanceVGConfig.preset("tiny")
    for field in ("hidden_channels", "num_queries", "decoder_layers", "decoder_num_points", "t2i_ffn_dim"):
        assert getattr(config, field) == getattr(tiny, field), field
    for field in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "image_size"):
        assert getattr(config.encoder_config, field) == getattr(tiny.encoder_config, field), field


def test_a_custom_size_model_with_a_layer_gap_is_refused(original, tmp_path, capsys):
    code, err = _custom(tmp_path, capsys, _without(original, ENCODER_LAYER + "0."))
    assert code == 1 and "lacks encoder layer(s) 0" in err, err
    assert not (tmp_path / "out" / "model").exists()


def test_an_override_contradicting_a_custom_size_model_is_refused(original, tmp_path, capsys):
    code, err = _custom(tmp_path, capsys, original, dict(HEADS, num_queries=4))
    assert code == 1 and "contradicts the weights" in err, err
    assert (
        "num_queries = 4, but the checkpoint has 6 (head.query_generation.query_embed.weight (6, 32))" in err
    )


@pytest.mark.parametrize(
    "key", [ENCODER_LAYER + "0.ffn.A.fc1.weight", DECODER_LAYER + "0.ffns.0.layers.0.0.weight"]
)
def test_a_transposed_tensor_of_a_custom_size_model_blames_its_key(original, tmp_path, capsys, key):
    broken = dict(original)
    broken[key] = original[key].t().contiguous()
    code, err = _custom(tmp_path, capsys, broken)
    assert code == 1 and err.startswith(f"refseg convert: error: {key} has shape"), err
    assert "transposed" in err


@pytest.mark.parametrize(
    "overrides, words",
    [
        (
            '{"dropout": 3}',
            "'dropout': ValueError: Value must be greater or equal to 0.0 and smaller than 1.0, got 3",
        ),
        ('{"encoder_config": {"num_attention_heads": 5}}', "must be divisible by num_attention_heads"),
        ('{"num_queries": "six"}', "--config_overrides: "),
    ],
)
def test_invalid_override_values_are_one_line(original, tmp_path, capsys, overrides, words):
    err = _refused(tmp_path, capsys, original, "--config_overrides", overrides)
    assert err.startswith("refseg convert: error: --config_overrides: ") and words in err
