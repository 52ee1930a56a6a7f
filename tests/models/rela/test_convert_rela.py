"""Converting released ReLA checkpoints (detectron2 layout) into ``RelaForReferringSegmentation``."""

from pathlib import Path

import numpy as np
import pytest
import torch

import refseg.hub
from refseg.modeling.pretrained.rela_keys import relative_position_index
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation, RelaProcessor
from refseg.models.rela.convert_checks import config_value, expected_layout, infer_preset, read_sizes
from refseg.models.rela.convert_keys import (
    convert_rela_state_dict,
    predictor_key_to_refseg,
    refseg_key_to_predictor,
    rela_state_dict_to_original,
)
from refseg.models.rela.convert_rela import convert_checkpoint, load_rela_checkpoint, read_rela_state_dict
from refseg.models.rela.convert_tokenizer import load_bert_tokenizer
from refseg_cli import main
from tests.models.rela.original_checkpoint import rela_checkpoint

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
    # the converter tells the preset from the file and reads back the preset's sizes
    config = RelaConfig.preset(preset)
    assert infer_preset(layout) == preset
    sizes = read_sizes(layout)
    assert len(sizes) >= 19 and all(config_value(config, f) == value for f, (value, _) in sizes.items())


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
    assert set(state) == set(back)  # every tensor comes from the checkpoint (no unused final LayerNorm)
    assert all(torch.equal(back[k], state[k]) for k in back)


RESNET_TINY = {
    "model_type": "resnet",
    "embedding_size": 8,
    "hidden_sizes": [16, 32, 64, 128],
    "depths": [1, 2, 1, 1],
    "layer_type": "bottleneck",
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
    "downsample_in_bottleneck": False,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}
RESNET_OVERRIDES = {"backbone_config": RESNET_TINY, "encoder_fusion": "none"}


def tiny_checkpoint(config, seed=0):
    """A hand-written ReLA-layout state dict for ``config`` (names from the original's module tree)."""
    with torch.device("meta"):
        text_state = RelaForReferringSegmentation(config).model.text_encoder.model.state_dict()
    return rela_checkpoint(config, text_state, seed)


@pytest.fixture(scope="module")
def swin_checkpoint():
    return tiny_checkpoint(RelaConfig.preset("tiny"))


@pytest.mark.parametrize("overrides", [{}, RESNET_OVERRIDES], ids=["swin", "resnet"])
def test_hand_written_layout_is_the_converters_expected_layout(overrides):
    config = RelaConfig.preset("tiny", **overrides)
    checkpoint = tiny_checkpoint(config)
    layout = expected_layout(config)
    assert set(checkpoint) == set(layout)
    assert {k: tuple(v.shape) for k, v in checkpoint.items()} == layout


@pytest.mark.parametrize("overrides", [{}, RESNET_OVERRIDES], ids=["swin", "resnet"])
def test_every_value_lands_and_comes_back(overrides):
    """Converted, then put back in the original layout: every tensor of the file, bit for bit."""
    config = RelaConfig.preset("tiny", **overrides)
    checkpoint = tiny_checkpoint(config)
    model, report = load_rela_checkpoint(checkpoint, preset="tiny", config_overrides=overrides)
    windows = dict.fromkeys(range(4), config.backbone_config.window_size) if not overrides else None
    back = rela_state_dict_to_original(model.state_dict(), windows)
    assert set(back) == set(checkpoint)
    for key, tensor in checkpoint.items():
        assert torch.equal(back[key], tensor), key
    assert report.preset == "tiny" and report.parameters == sum(p.numel() for p in model.parameters())
    assert report.converted + len(report.recomputed) == len(checkpoint)
    assert report.language_gates_closed is (None if overrides else False)


def test_values_land_in_the_modules_the_original_uses_them_in(swin_checkpoint):
    model, _ = load_rela_checkpoint(swin_checkpoint, preset="tiny")
    p = "sem_seg_head.predictor."
    decoder = model.decoder
    pairs = {
        p + "RIA_layers.1.multihead_attn.in_proj_weight": decoder.layers[
            1
        ].region_image_attention.in_proj_weight,
        p + "RLA_vision.0.self_attn.out_proj.weight": decoder.layers[0].region_attention.out_proj.weight,
        p + "transformer_ffn_layers.1.linear1.weight": decoder.layers[1].ffn[0].weight,
        p + "transformer_ffn_layers.1.linear2.weight": decoder.layers[1].ffn[3].weight,
        p + "RLA_lang_att.multihead_attn.in_proj_bias": decoder.language_attention.attention.in_proj_bias,
        p + "lang_proj.weight": decoder.language_attention.language_projection.weight,
        p + "lang_weight": decoder.language_attention.language_weight,
        p + "level_embed.weight": decoder.level_embed.weight,
        p + "nt_embed.layers.1.weight": decoder.heads.no_target_embed.layers[1].weight,
        p + "minimap_embed.bias": decoder.heads.minimap_embed.bias,
        "sem_seg_head.pixel_decoder.transformer.level_embed": model.model.pixel_decoder.level_embed,
    }
    for key, parameter in pairs.items():
        assert torch.equal(parameter.detach(), swin_checkpoint[key]), key
    qkv = swin_checkpoint["backbone.layers.2.blocks.0.attn.qkv.weight"]
    attention = model.model.backbone.model.swin.encoder.layers[2].blocks[0].attention
    width = qkv.shape[1]
    assert torch.equal(attention.k_proj.weight.detach(), qkv[width : 2 * width])  # rows q; k; v


def test_resnet_stem_and_blocks_follow_detectron2s_names():
    config = RelaConfig.preset("tiny", **RESNET_OVERRIDES)
    checkpoint = tiny_checkpoint(config)
    model, _ = load_rela_checkpoint(checkpoint, preset="tiny", config_overrides=RESNET_OVERRIDES)
    resnet = model.model.backbone.model
    stage = resnet.encoder.stages[1].layers[1]  # res3, block 1
    assert torch.equal(stage.layer[2].convolution.weight.detach(), checkpoint["backbone.res3.1.conv3.weight"])
    assert torch.equal(
        stage.layer[0].normalization.running_var, checkpoint["backbone.res3.1.conv1.norm.running_var"]
    )
    shortcut = resnet.encoder.stages[3].layers[0].shortcut
    assert torch.equal(shortcut.convolution.weight.detach(), checkpoint["backbone.res5.0.shortcut.weight"])
    stem = resnet.embedder.embedder
    assert torch.equal(stem.normalization.bias.detach(), checkpoint["backbone.stem.conv1.norm.bias"])


def _without(checkpoint, prefix):
    return {k: v for k, v in checkpoint.items() if not k.startswith(prefix)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a middle layer lost: its keys are named
        (
            lambda sd: _without(sd, "sem_seg_head.predictor.RLA_vision.0."),
            r"lacks 6 tensor\(s\) of the tiny preset: sem_seg_head\.predictor\.RLA_vision\.0\.self_attn\.in_proj_weight",
        ),
        # the last layer lost: not converted into a shallower model
        (
            lambda sd: {
                k: v for k, v in sd.items() if ".1." not in k or "predictor" not in k or "_embed" in k
            },
            r"decoder_layers = 1 .*the tiny preset has 2.*'\{\"decoder_layers\": 1\}'",
        ),
        (
            lambda sd: sd | {"sem_seg_head.predictor.extra.weight": torch.zeros(2)},
            r"1 tensor\(s\) that are not ReLA",
        ),
        (
            lambda sd: (
                sd
                | {
                    "sem_seg_head.predictor.lang_proj.weight": sd["sem_seg_head.predictor.lang_proj.weight"][
                        :, :16
                    ]
                }
            ),
            r"lang_proj\.weight has shape \(32, 16\) in the checkpoint, the tiny preset expects \(32, 32\)",
        ),
        (
            lambda sd: sd | {"sem_seg_head.pixel_decoder.mask_features.weight": torch.zeros(16, 32, 1, 1)},
            r"mask_dim = 16",
        ),
        (
            lambda sd: (
                sd | {"sem_seg_head.predictor.minimap_embed.weight": torch.full((2, 32), float("nan"))}
            ),
            r"NaN or infinite values .*minimap_embed\.weight",
        ),
        (
            lambda sd: sd | {"sem_seg_head.predictor.RLA_gate.weight": torch.zeros(1)},
            r"`original` branch",
        ),
        (lambda sd: _without(sd, "backbone."), r"not a ReLA checkpoint"),
        (
            lambda sd: (
                sd
                | {
                    "backbone.layers.0.blocks.0.attn.relative_position_index": torch.zeros(
                        16, 16, dtype=torch.long
                    )
                }
            ),
            r"relative position index of a 4x4 window",
        ),
    ],
    ids=[
        "middle-layer",
        "last-layer",
        "extra",
        "shape",
        "size",
        "nan",
        "original-branch",
        "no-backbone",
        "index",
    ],
)
def test_what_cannot_be_converted_is_refused_in_one_line(swin_checkpoint, change, message):
    with pytest.raises(ValueError, match=message) as error:
        load_rela_checkpoint(change(dict(swin_checkpoint)), preset="tiny")
    assert "\n" not in str(error.value)


def test_released_presets_are_inferred_and_other_widths_need_a_preset(swin_checkpoint):
    assert infer_preset({"backbone.patch_embed.proj.weight": torch.zeros(128, 3, 4, 4)}) == "swin-base"
    assert infer_preset({"backbone.patch_embed.proj.weight": torch.zeros(96, 3, 4, 4)}) == "swin-tiny"
    assert infer_preset({"backbone.stem.conv1.weight": torch.zeros(64, 3, 7, 7)}) == "r50"
    with pytest.raises(ValueError, match="width 16, not one of the released models'.*pass --preset"):
        load_rela_checkpoint(swin_checkpoint)
    with pytest.raises(
        ValueError,
        match='the checkpoint has num_queries = 16 .*the swin-base preset has 100; hidden_dim = 32 .*\'\\{"num_queries": 16, "hidden_dim": 32, .*"text_config": \\{"vocab_size": 100',
    ):
        load_rela_checkpoint(swin_checkpoint, preset="swin-base")
    with pytest.raises(
        ValueError, match="contradicts the weights: it sets num_queries = 25, the checkpoint has 16"
    ):
        load_rela_checkpoint(swin_checkpoint, preset="tiny", config_overrides={"num_queries": 25})
    with pytest.raises(ValueError, match="unknown ReLA config field"):
        load_rela_checkpoint(swin_checkpoint, preset="tiny", config_overrides={"num_querys": 16})


def test_pickle_files_are_refused_and_released_files_are_read_as_saved(swin_checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"pickle file \(\.pkl\): reading it could run code"):
        read_rela_state_dict(tmp_path / "model_final.pkl")
    # detectron2's checkpointer: {"model": ..., "iteration": ...}, plus position_ids from transformers < 4.31
    path = tmp_path / "gres_tiny.pth"
    old_bert = {"text_encoder.embeddings.position_ids": torch.arange(40)[None]}
    training_state = {
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "weight_decay": 0.05, "params": [0]}]},
        "scheduler": {"last_epoch": 149999, "base_lrs": [1e-5]},
        "iteration": np.int64(149999),  # a numpy scalar: read through the safe allow-list
    }
    torch.save({"model": swin_checkpoint | old_bert, **training_state}, path)
    model, report = load_rela_checkpoint(path, preset="tiny")
    assert "text_encoder.embeddings.position_ids" in report.recomputed
    assert not model.training


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "red", "circle", "on", "left", "square", "blue"]


@pytest.fixture(scope="module")
def files(swin_checkpoint, tmp_path_factory):
    """A released-style checkpoint file of the tiny model and a bert-style vocab.txt."""
    folder = tmp_path_factory.mktemp("rela")
    checkpoint = folder / "gres_tiny.pth"
    torch.save({"model": swin_checkpoint, "iteration": 7}, checkpoint)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return checkpoint, vocab


def _cli(checkpoint, output, *extra):
    return main(["convert", "rela", str(checkpoint), "--output", str(output), "--preset", "tiny", *extra])


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".converting-" in p.name or ".previous-" in p.name)


def test_cli_writes_a_folder_that_loads_and_computes_what_the_checkpoint_does(files, tmp_path, capsys):
    checkpoint, vocab = files
    output = tmp_path / "rela-tiny"
    assert _cli(checkpoint, output, "--tokenizer", str(vocab)) == 0
    out = capsys.readouterr().out
    assert f"wrote {output} (518,766 parameters)" in out and "tiny preset, 278 tensors converted" in out
    expected, _ = load_rela_checkpoint(checkpoint, preset="tiny")
    loaded = RelaForReferringSegmentation.from_pretrained(output).eval()
    processor = RelaProcessor.from_pretrained(output)
    batch = processor(images=[torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8)], text=["the red circle"])
    assert batch["input_ids"].tolist() == [
        [2, 5, 6, 7, 3, 0, 0, 0]
    ]  # [CLS] the red circle [SEP], padded to 8
    assert batch["pixel_values"].shape == (1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = loaded(**batch), expected(**batch)
    assert torch.equal(ours.mask_logits, theirs.mask_logits)
    assert torch.equal(ours.no_target_class_logits, theirs.no_target_class_logits)
    assert _leftovers(tmp_path) == []


def test_cli_refusal_is_exit_1_one_stderr_line_and_no_folder(swin_checkpoint, files, tmp_path, capsys):
    _, vocab = files
    broken = tmp_path / "broken.pth"
    torch.save({"model": _without(swin_checkpoint, "sem_seg_head.predictor.RIA_layers.0.")}, broken)
    output = tmp_path / "out"
    assert _cli(broken, output, "--tokenizer", str(vocab)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refseg convert: error: the checkpoint lacks 6 tensor(s)")
    assert "RIA_layers.0.multihead_attn.in_proj_weight" in err
    assert not output.exists() and _leftovers(tmp_path) == []


def test_cli_without_tokenizer_says_what_to_pass(files, tmp_path, capsys):
    checkpoint, _ = files
    assert _cli(checkpoint, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --tokenizer" in err and "bert-base-uncased" in err
    assert not (tmp_path / "out").exists()
    assert _cli(checkpoint, tmp_path / "out", "--tokenizer", str(tmp_path / "nope")) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_conversion_and_leaves_nothing_behind(
    files, tmp_path, monkeypatch, capsys
):
    checkpoint, vocab = files
    output = tmp_path / "rela-tiny"
    assert _cli(checkpoint, output, "--tokenizer", str(vocab)) == 0
    before = {p.name: p.read_bytes() for p in output.iterdir()}

    def full_disk(self, folder, *args, **kwargs):
        (Path(folder) / "tokenizer.json").write_text("{")  # half written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RelaProcessor, "save_pretrained", full_disk)
    assert _cli(checkpoint, output, "--tokenizer", str(vocab)) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_an_unrelated_folder_is_not_replaced(files, tmp_path, capsys):
    checkpoint, vocab = files
    (tmp_path / "notes.txt").write_text("mine")
    assert _cli(checkpoint, tmp_path, "--tokenizer", str(vocab)) == 1
    assert "not a converted ReLA folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_push_to_hub_uploads_the_folder_with_a_rela_model_card(files, tmp_path, monkeypatch, capsys):
    checkpoint, vocab = files
    calls = []

    class RecordingApi:  # stands in for huggingface_hub.HfApi: no network
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
            calls.append(("create_repo", repo_id, private))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message=None, **kwargs):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(refseg.hub, "HfApi", RecordingApi)
    output = tmp_path / "rela-tiny"
    assert _cli(checkpoint, output, "--tokenizer", str(vocab), "--push-to-hub", "my-org/rela-tiny") == 0
    assert "uploaded" in capsys.readouterr().out
    assert calls[0] == ("create_repo", "my-org/rela-tiny", None)
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(calls[1][2])
    card = (output / "README.md").read_text()
    assert (
        "ReLA (GRES) converted for refseg" in card
        and "gres_tiny.pth" in card
        and "docs/models/rela.md" in card
    )


def test_tokenizer_folder_vocab_file_and_refusals(files, tmp_path):
    checkpoint, vocab = files
    folder = tmp_path / "bert"
    load_bert_tokenizer(vocab).save_pretrained(folder)  # a folder as `hf download` gives (tokenizer.json...)
    tokenizer = load_bert_tokenizer(folder)
    assert tokenizer("The red circle")["input_ids"] == [2, 5, 6, 7, 3]  # lower-cased word pieces
    no_cls = tmp_path / "no_cls.txt"
    no_cls.write_text("\n".join(t for t in VOCAB if t != "[CLS]"))
    with pytest.raises(ValueError, match=r"is not a BERT tokenizer: it lacks \[CLS\]"):
        load_bert_tokenizer(no_cls)
    with pytest.raises(ValueError, match="holds no tokenizer.json"):
        load_bert_tokenizer(tmp_path)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(VOCAB + [f"word{i}" for i in range(100)]))
    with pytest.raises(ValueError, match="has 112 tokens, more than the 100 rows"):
        convert_checkpoint(checkpoint, tmp_path / "out", tokenizer=big, preset="tiny")
    assert not (tmp_path / "out").exists()
