"""examples/train.py: a tiny run saves a loadable model and card; resume is exact; 2 processes == 1 process.

Each run is a subprocess (as a user runs it) on the tiny preset with 64 px scenes and a few steps.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train.py"
TINY = ["--config_preset", "tiny", "--per_device_train_batch_size", "2", "--logging_steps", "1"]
NO_DROPOUT = [
    "--config_overrides",
    json.dumps({"text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}}),
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def _train(*args, launcher=(), env=None):
    cmd = [*launcher, str(SCRIPT), *args] if launcher else [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _weights(path):
    return load_file(str(Path(path) / "model.safetensors"))


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _relative_diff(a, b):
    """||a - b|| / ||a|| over all parameters."""
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a])
    return (diff.norm() / torch.cat([a[k].flatten() for k in a]).norm()).item()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """7 optimizer steps over 3 steps per epoch (2 images x 3 sentences, batch 2), checkpoints every 4."""
    out = tmp_path_factory.mktemp("train") / "full"
    args = [
        *TINY,
        "--train_images",
        "2",
        "--val_images",
        "2",
        "--max_train_steps",
        "7",
        "--checkpointing_steps",
        "4",
    ]
    log = _train(*args, "--output_dir", str(out))
    return out, args, log


def test_tiny_run_writes_a_loadable_model_processor_and_card(full_run):
    from transformers import AutoModel, AutoProcessor, pipeline

    import refseg  # noqa: F401

    out, _, log = full_run
    assert "global batch 2 per optimizer step" in log and "optimizer steps = 7 (3 per epoch" in log
    assert "final evaluation: gIoU" in log
    assert (out / "step_4").is_dir()
    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.model_type == "instalign" and processor.image_processor.size["height"] == 64
    result = pipeline("referring-segmentation", model=str(out))(
        torch.zeros(3, 40, 40, dtype=torch.uint8), "all circles"
    )
    assert result["mask"].size == (40, 40)
    results = json.loads((out / "all_results.json").read_text())
    assert results["completed_steps"] == 7 and 0.0 <= results["gIoU"] <= 100.0
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "refseg" and card.data.pipeline_tag == "image-segmentation"
    metrics = {m["name"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert set(metrics) == {"gIoU", "cIoU", "N-acc", "T-acc"} and metrics["gIoU"] == pytest.approx(
        results["gIoU"], abs=1e-3
    )
    assert "--max_train_steps 7" in card.text and "Wall time:" in card.text


def test_resume_from_latest_matches_an_uninterrupted_run(full_run, tmp_path):
    full, args, _ = full_run
    out = tmp_path / "resumed"
    log = _train(*args, "--output_dir", str(out), "--stop_after_steps", "4")
    assert "stopped after 4 steps" in log and not (out / "model.safetensors").exists()
    log = _train(*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert f"Resuming from checkpoint {out / 'step_4'}" in log
    # step 4 is inside the second epoch: optimizer, scheduler, RNG and data position must all be restored
    assert _max_diff(_weights(full), _weights(out)) == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    common = [
        *TINY[:2],
        *NO_DROPOUT,
        "--train_images",
        "4",
        "--val_images",
        "2",
        "--max_train_steps",
        "3",
        "--skip_eval",
    ]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
    ]  # fmt: skip
    env = dict(_env(), ACCELERATE_USE_CPU="1")  # torch.distributed with gloo on CPU
    log = _train(
        *common,
        "--per_device_train_batch_size",
        "2",
        "--output_dir",
        str(tmp_path / "ddp"),
        launcher=launcher,
        env=env,
    )
    assert "2 per device x 2 process(es) x 1 accumulation step(s) = global batch 4" in log
    _train(*common, "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "one"))
    _train(*common, "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "small"))
    ddp, one, small = (_weights(tmp_path / name) for name in ("ddp", "one", "small"))
    # equal up to float summation order (Adam amplifies it only for near-zero gradients)
    assert _max_diff(ddp, one) < 1e-4
    same, other = _relative_diff(ddp, one), _relative_diff(ddp, small)
    assert same < 1e-5, same
    assert other > 100 * same, (same, other)  # a different global batch moves the weights far more
