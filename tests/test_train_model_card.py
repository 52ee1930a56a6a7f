"""examples/train.py's model card on real data: the declared dataset (not a path), its split, ``datasets:``,
``base_model:`` where training started from pretrained weights, and the final evaluation's metrics."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from refseg.data import prepare_dataset
from tests.data.refer_fixtures import make_grefcoco

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train.py"
TINY = ["--config_preset", "tiny", "--per_device_train_batch_size", "2", "--max_train_steps", "1"]


def _train(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=400
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("refseg_train_script_card", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_result(card: ModelCard) -> tuple[dict, dict]:
    result = card.data.to_dict()["model-index"][0]["results"][0]
    return result["dataset"], {m["name"]: m["value"] for m in result["metrics"]}


def test_a_run_on_a_prepared_benchmark_names_it_and_its_split_and_reports_the_final_metrics(tmp_path):
    data = tmp_path / "my-local-copy"
    prepare_dataset("grefcoco", make_grefcoco(tmp_path / "src"), data, progress=False)
    out = tmp_path / "run"
    _train(*TINY, "--dataset_dir", str(data), "--validation_split", "val", "--output_dir", str(out))
    card = ModelCard.load(out / "README.md")
    dataset, metrics = _eval_result(card)
    assert card.data.datasets == ["grefcoco"]
    assert (dataset["name"], dataset["type"], dataset["split"]) == ("grefcoco", "grefcoco", "val")
    results = json.loads((out / "all_results.json").read_text())
    assert metrics == {k: pytest.approx(results[k], abs=1e-3) for k in ("gIoU", "cIoU", "N-acc", "T-acc")}
    assert "my-local-copy" not in json.dumps(card.data.to_dict())  # the metadata names no local path
    assert "Results on grefcoco (val)" in card.text
    assert card.data.base_model is None  # trained from scratch

    # fine-tuning a local folder: no Hub id to link, the card says where it started without the path
    tuned = tmp_path / "tuned"
    args = [*TINY, "--per_device_train_batch_size", "1", "--model_name_or_path", str(out)]
    _train(*args, "--dataset_dir", str(data), "--output_dir", str(tuned))
    card = ModelCard.load(tuned / "README.md")
    assert card.data.base_model is None and "started from: local run" in card.content
    assert card.data.to_dict()["model-index"][0]["results"][0]["dataset"]["split"].startswith(
        "train (10% held out"
    )


def test_base_model_lists_the_hub_ids_training_started_from(train_script, tmp_path):
    args = argparse.Namespace(
        model_name_or_path=None,
        vision_model_name_or_path="microsoft/swin-base-patch4-window12-384-in22k",
        text_model_name_or_path="roberta-base",
        init_from_beit3=None,
    )
    assert train_script.card_base_models(args) == [
        "microsoft/swin-base-patch4-window12-384-in22k",
        "roberta-base",
    ]
    args.vision_model_name_or_path, args.text_model_name_or_path = None, None
    args.model_name_or_path = "refseg/instalign-grefcoco"
    assert train_script.card_base_models(args) == ["refseg/instalign-grefcoco"]
    args.model_name_or_path = str(tmp_path)  # a local folder is not a Hub id
    assert train_script.card_base_models(args) is None


def test_a_hub_dataset_is_named_by_its_id(train_script):
    args = argparse.Namespace(dataset_name="org/grefcoco", dataset_dir=None, validation_split="val")
    fields = train_script.card_dataset_fields(args)
    assert fields == dict(
        dataset_name="org/grefcoco",
        dataset_type="org/grefcoco",
        dataset_split="val",
        datasets=["org/grefcoco"],
    )
