"""examples/evaluate.py end to end: tiny InstAlign saved locally, benchmarks prepared from official-format fixtures."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from refseg.data import prepare_dataset
from refseg.models.instalign.configuration_instalign import InstAlignConfig
from refseg.models.instalign.image_processing_instalign import InstAlignImageProcessor
from refseg.models.instalign.modeling_instalign import InstAlignForReferringSegmentation
from refseg.models.instalign.processing_instalign import InstAlignProcessor
from tests.data import refer_fixtures as rf

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("evaluate_example", ROOT / "examples" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tokenizer():
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    words = "the two people both persons zebra left person and crowd dog tiny green umbrella on lady right woman".split()
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=16,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_instalign")
    torch.manual_seed(0)
    InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny")).save_pretrained(path)
    InstAlignProcessor(InstAlignImageProcessor(size=64), _tokenizer()).save_pretrained(path)
    return path


def test_grefcoco_gres_and_grec(tmp_path, model_dir):
    data = tmp_path / "grefcoco"
    prepare_dataset("grefcoco", rf.make_grefcoco(tmp_path / "src"), data, progress=False)
    out = tmp_path / "m.json"
    assert (
        _script().main(
            ["--model", str(model_dir), "--dataset", str(data), "--output", str(out), "--batch-size", "2"]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert (result["split"], result["benchmark"], result["resolution"], result["num_samples"]) == (
        "val",
        "gres",
        "original",
        2,
    )
    gres, grec = result["metrics"]["gres"], result["metrics"]["grec"]
    assert {"gIoU", "cIoU", "N-acc", "T-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9"} <= set(gres)
    assert gres["TP"] + gres["FN"] == 1 and gres["FP"] + gres["TN"] == 1  # val: one no-target, one target row
    assert gres["resolution"] == "original" and "ReLA" in gres["definition"]
    assert {"Pr@(F1=1, IoU>=0.5)", "N-acc", "T-acc"} <= set(grec) and grec["num_samples"] == 2
    assert all(0.0 <= gres[k] <= 100.0 for k in ("gIoU", "cIoU", "N-acc", "T-acc"))


def test_model_resolution_and_explicit_split(tmp_path, model_dir):
    data = tmp_path / "refcoco"
    prepare_dataset(
        "refcoco",
        rf.make_refer_style(tmp_path / "src", "refcoco", "unc", rf.refcoco_refs()),
        data,
        progress=False,
    )
    out = tmp_path / "m.json"
    _script().main(
        [
            "--model",
            str(model_dir),
            "--dataset",
            str(data),
            "--split",
            "train",
            "--resolution",
            "model",
            "--output",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert (result["benchmark"], result["resolution"], result["split"]) == ("res", "64x64", "train")
    assert set(result["metrics"]) == {"res", "rec"}
    assert result["metrics"]["res"]["resolution"] == "64x64" and result["metrics"]["res"]["num_samples"] == 2
    assert {"mIoU", "oIoU", "P@0.5", "P@0.9"} <= set(result["metrics"]["res"])
    assert result["metrics"]["rec"]["num_samples"] == 2 and "Precision@0.5" in result["metrics"]["rec"]


def test_rrefcoco_and_refzom_are_detected(tmp_path, model_dir):
    rr = tmp_path / "rr"
    prepare_dataset(
        "rrefcoco",
        rf.make_refer_style(tmp_path / "a", "rrefcoco", "unc", rf.rrefcoco_refs()),
        rr,
        progress=False,
    )
    out = tmp_path / "rr.json"
    _script().main(["--model", str(model_dir), "--dataset", str(rr), "--output", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "rrefcoco" and result["metrics"]["rrefcoco"]["num_refs"] == 1
    assert {"mIoU", "oIoU", "mRR", "rIoU"} <= set(result["metrics"]["rrefcoco"])
    zom = tmp_path / "zom"
    prepare_dataset("refzom", rf.make_refzom(tmp_path / "b"), zom, progress=False)
    _script().main(["--model", str(model_dir), "--dataset", str(zom), "--output", str(out)])
    result = json.loads(out.read_text())
    assert (result["benchmark"], result["split"]) == ("refzom", "test")
    assert result["metrics"]["refzom"]["num_no_target"] == 2 and "Acc" in result["metrics"]["refzom"]


def test_unknown_split_is_a_clear_error(tmp_path, model_dir):
    data = tmp_path / "g"
    prepare_dataset("grefcoco", rf.make_grefcoco(tmp_path / "src"), data, progress=False)
    with pytest.raises(
        SystemExit, match=r"split 'testC' not in .*available: \['train', 'val', 'testA', 'testB'\]"
    ):
        _script().main(["--model", str(model_dir), "--dataset", str(data), "--split", "testC"])


def test_synthetic_scenes(tmp_path, model_dir):
    out = tmp_path / "s.json"
    args = [
        "--model",
        str(model_dir),
        "--dataset",
        "synthetic",
        "--synthetic-images",
        "3",
        "--synthetic-size",
        "64",
    ]
    _script().main([*args, "--resolution", "model", "--output", str(out)])
    result = json.loads(out.read_text())
    assert (result["dataset"], result["split"], result["resolution"], result["num_samples"]) == (
        "synthetic",
        "test",
        "64x64",
        9,
    )
    assert result["benchmark"] == "gres" and set(result["metrics"]) == {"gres", "grec"}
    assert result["metrics"]["gres"]["num_samples"] == 9 == result["metrics"]["grec"]["num_samples"]
    with pytest.raises(SystemExit, match="synthetic splits are train, validation and test, not 'val'"):
        _script().main([*args, "--split", "val"])
