"""examples/train.py: gradient accumulation 2 x batch 2 trains as batch 4 (InstAlign, whose matched-mask count
differs between the micro-batches of a step)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
NO_DROPOUT = json.dumps({"text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}})


def _run(out: Path, *extra: str) -> None:
    spec = importlib.util.spec_from_file_location("train_example", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--model_type", "instalign", "--config_preset", "tiny", "--config_overrides", NO_DROPOUT]
    args += ["--train_images", "4", "--val_images", "2", "--max_train_steps", "3", "--skip_eval"]
    args += ["--recipe", "generic", "--seed", "0", "--output_dir", str(out), *extra]
    try:
        module.main(args)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def _train(out: Path, *extra: str) -> torch.Tensor:
    _run(out, *extra)
    weights = load_file(str(out / "model.safetensors"))
    return torch.cat([w.flatten().double() for _, w in sorted(weights.items()) if w.is_floating_point()])


@pytest.mark.slow
def test_accumulated_micro_batches_train_as_the_whole_batch(tmp_path):
    torch.set_num_threads(1)
    whole = _train(tmp_path / "whole", "--per_device_train_batch_size", "4")
    accumulated = _train(
        tmp_path / "accumulated", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"
    )
    small = _train(tmp_path / "small", "--per_device_train_batch_size", "2")
    same = float((accumulated - whole).norm() / (small - whole).norm())
    assert same < 1e-2, same  # AdamW amplifies summation-order noise only in near-zero gradients


@pytest.mark.slow
def test_a_resumed_accumulating_run_is_exact(tmp_path):
    """The step's micro-batches are read ahead; a run resumed after skipping a step's batches still matches."""
    torch.set_num_threads(1)
    accumulate = ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"]
    uninterrupted = _train(tmp_path / "uninterrupted", *accumulate)
    out = tmp_path / "resumed"
    _run(out, *accumulate, "--checkpointing_steps", "1", "--stop_after_steps", "1")
    resumed = _train(out, *accumulate, "--resume_from_checkpoint", "latest")
    torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)
