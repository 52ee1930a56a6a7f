"""A short synthetic training run of METRIS through the model-agnostic examples/train.py (in process)."""

import importlib.util
import json
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, pipeline

import refseg  # noqa: F401
from refseg.models.metris import MetrisForReferringSegmentation, MetrisProcessor

ROOT = Path(__file__).resolve().parents[3]


def _train_script():
    spec = importlib.util.spec_from_file_location("train_example", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
def test_three_steps_of_tiny_metris_with_train_py(tmp_path, fresh_accelerate_state):
    out = tmp_path / "run"
    args = ["--model_type", "metris", "--config_preset", "tiny", "--max_train_steps", "3"]
    args += ["--train_images", "2", "--val_images", "2", "--per_device_train_batch_size", "2"]
    args += ["--logging_steps", "1", "--seed", "0", "--output_dir", str(out)]
    metrics = _train_script().main(args)
    assert {"gIoU", "cIoU", "N-acc", "T-acc"} <= set(metrics) and metrics["resolution"] == "64x64"
    results = json.loads((out / "all_results.json").read_text())
    assert results["completed_steps"] == 3
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "metris" and config.encoder_fusion == "pwam" and config.image_size == 64
    trained = load_file(str(out / "model.safetensors"))
    assert trained["pixel_contrastive_loss.tau"].item() != 1.0  # eq. 4's temperature was trained (init 1.0)
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, MetrisForReferringSegmentation)
    segmenter = pipeline("referring-segmentation", model=str(out))
    assert isinstance(segmenter.processor, MetrisProcessor)
    from refseg.data import synthetic_scenes

    scene = synthetic_scenes(num_images=1, seed=5, image_size=64)[0]
    result = segmenter(scene["image"], scene["sentence"])
    assert result["mask"].size == scene["image"].size
