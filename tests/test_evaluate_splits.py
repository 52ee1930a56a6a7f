"""examples/evaluate.py: single-split ``save_to_disk`` folders, and ``--benchmark auto`` decided by what the
dataset declares (or its whole split), never by the rows of a ``--max-samples`` subset."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch

from refseg.data import prepare_dataset
from refseg.models.instalign.configuration_instalign import InstAlignConfig
from refseg.models.instalign.image_processing_instalign import InstAlignImageProcessor
from refseg.models.instalign.modeling_instalign import InstAlignForReferringSegmentation
from refseg.models.instalign.processing_instalign import InstAlignProcessor
from tests.data import refer_fixtures as rf
from tests.test_evaluate_script import _script, _tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_instalign")
    torch.manual_seed(0)
    InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny")).save_pretrained(path)
    InstAlignProcessor(InstAlignImageProcessor(size=64), _tokenizer()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def grefcoco(tmp_path_factory) -> Path:
    """gRefCOCO prepared from the official-format fixtures: val has a no-target and a multi-target row,
    testA one single-target row."""
    root = tmp_path_factory.mktemp("grefcoco")
    prepare_dataset("grefcoco", rf.make_grefcoco(root / "src"), root / "prepared", progress=False)
    return root / "prepared"


def _evaluate(model_dir: Path, dataset: Path, out: Path, *extra: str) -> dict:
    argv = ["--model", str(model_dir), "--dataset", str(dataset), "--output", str(out), *extra]
    assert _script().main(argv) == 0
    return json.loads(out.read_text())


def test_a_single_split_save_to_disk_folder_is_evaluated(tmp_path, model_dir, grefcoco):
    folder = tmp_path / "val_only"
    datasets.load_dataset(str(grefcoco), split="val").save_to_disk(str(folder))
    result = _evaluate(model_dir, folder, tmp_path / "m.json")
    assert (result["split"], result["benchmark"], result["num_samples"]) == ("val", "gres", 2)
    result = _evaluate(model_dir, folder, tmp_path / "m.json", "--split", "val")
    assert result["split"] == "val"
    with pytest.raises(SystemExit, match="split 'test' not in"):
        _evaluate(model_dir, folder, tmp_path / "m.json", "--split", "test")


def test_auto_takes_the_benchmark_a_prepared_folder_declares(tmp_path, model_dir, grefcoco):
    """gRefCOCO's testA holds only a single-target row; it is still scored with GRES metrics."""
    result = _evaluate(model_dir, grefcoco, tmp_path / "m.json", "--split", "testA")
    assert result["benchmark"] == "gres" and set(result["metrics"]) == {"gres", "grec"}


def test_auto_does_not_switch_to_res_on_a_single_target_subset(tmp_path, model_dir, grefcoco):
    loaded = datasets.load_dataset(str(grefcoco))
    rows = datasets.concatenate_datasets([loaded["testA"], loaded["val"]])  # a single-target row first
    folder = tmp_path / "mixed"
    rows.save_to_disk(str(folder))
    result = _evaluate(model_dir, folder, tmp_path / "m.json", "--max-samples", "1")
    assert result["num_samples"] == 1 and result["benchmark"] == "gres"
