"""examples/evaluate.py and examples/train.py --model_name_or_path refuse a folder missing half its weights."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from refseg.data import prepare_dataset
from refseg.pipelines.loading import IncompleteCheckpointError
from tests.data import refer_fixtures as rf
from tests.processing_helpers import save_tiny_instalign

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_example", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def half_model(tmp_path_factory) -> Path:
    folder = save_tiny_instalign(tmp_path_factory.mktemp("half_model"))
    weights = load_file(folder / "model.safetensors")
    save_file(dict(sorted(weights.items())[::2]), folder / "model.safetensors")
    return folder


def test_evaluate_refuses_a_model_missing_weights(half_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "grefcoco"
    prepare_dataset("grefcoco", rf.make_grefcoco(tmp_path / "src"), data, progress=False)
    out = tmp_path / "m.json"
    argv = ["--model", str(half_model), "--dataset", str(data), "--output", str(out)]
    with pytest.raises(IncompleteCheckpointError, match=r"missing weight\(s\)"):
        _script("evaluate").main(argv)
    assert not out.exists()


def test_train_from_a_model_missing_weights_is_refused(half_model: Path) -> None:
    args = argparse.Namespace(model_name_or_path=str(half_model), tokenizer_name_or_path=None)
    with pytest.raises(IncompleteCheckpointError, match=r"missing weight\(s\)"):
        _script("train").build_model_and_processor(args)
