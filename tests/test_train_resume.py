"""examples/train.py resumes across world sizes and batch settings, with augmentation, and checks its arguments.

Each run is a subprocess on the tiny preset (64 px scenes, a few steps), as in test_train_script.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train.py"
TINY = ["--config_preset", "tiny", "--logging_steps", "1", "--skip_eval", "--val_images", "2"]
NO_DROPOUT = [
    "--config_overrides",
    json.dumps({"text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}}),
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    if "ACCELERATE_USE_CPU" not in extra:
        env.pop("ACCELERATE_USE_CPU", None)
    return env


def _run(*args: str, launcher: list[str] | None = None, env: dict | None = None) -> tuple[int, str]:
    cmd = [*launcher, str(SCRIPT), *args] if launcher else [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=400)
    return proc.returncode, proc.stdout + proc.stderr


def _train(*args: str, **kwargs) -> str:
    rc, log = _run(*args, **kwargs)
    assert rc == 0, log[-4000:]
    return log


def _logged_lr(log: str) -> dict[int, float]:
    """``{optimizer step: learning rate}`` from the script's ``step N: ... lr X`` lines."""
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+): train_loss \S+, lr ([0-9.e+-]+)", log)}


def _linear_lr(step: int, total: int, lr: float = 1e-4, floor: float = 1e-6) -> float:
    """The generic recipe's learning rate after ``step`` optimizer steps of ``total``."""
    return floor + (lr - floor) * (1 - step / total)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _relative_diff(a: dict, b: dict) -> float:
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a])
    return (diff.norm() / torch.cat([a[k].flatten() for k in a]).norm()).item()


@pytest.mark.slow
def test_a_two_process_checkpoint_resumed_with_one_process_keeps_the_schedule(tmp_path):
    """2 processes x 2 -> 1 process x 4 (same global batch): the LR continues at its step (it used to drop
    to the floor at once: the scheduler counted num_processes steps per optimizer step), with a warning."""
    common = [
        *TINY,
        *NO_DROPOUT,
        "--train_images",
        "4",
        "--max_train_steps",
        "6",
        "--checkpointing_steps",
        "3",
    ]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
    ]  # fmt: skip
    out = tmp_path / "run"
    _train(
        *common,
        "--per_device_train_batch_size",
        "2",
        "--output_dir",
        str(out),
        "--stop_after_steps",
        "3",
        launcher=launcher,
        env=_env(ACCELERATE_USE_CPU="1"),
    )
    log = _train(
        *common,
        "--per_device_train_batch_size",
        "4",
        "--output_dir",
        str(out),
        "--resume_from_checkpoint",
        "latest",
    )
    assert "num_processes 2 -> 1" in log and "continues at optimizer step 3" in log
    lrs = _logged_lr(log)
    assert sorted(lrs) == [4, 5, 6]
    for step, lr in lrs.items():
        assert lr == pytest.approx(_linear_lr(step, 6), rel=1e-3), (step, lr)
    one = tmp_path / "one"
    _train(*common, "--per_device_train_batch_size", "4", "--output_dir", str(one))
    assert _relative_diff(_weights(one), _weights(out)) < 1e-4  # the same optimisation, up to summation order


def test_another_global_batch_is_refused_unless_allowed_and_then_continues_the_schedule(tmp_path):
    common = [*TINY, "--train_images", "2", "--max_train_steps", "4", "--checkpointing_steps", "2"]
    out = tmp_path / "run"
    _train(*common, "--per_device_train_batch_size", "2", "--output_dir", str(out), "--stop_after_steps", "2")
    resume = [*common, "--per_device_train_batch_size", "3", "--output_dir", str(out)]
    rc, log = _run(*resume, "--resume_from_checkpoint", "latest")
    assert rc != 0 and "train.py: error:" in log and "global batch of 2 samples" in log
    assert "--allow_inexact_resume" in log and "Traceback" not in log
    assert not (out / "model.safetensors").exists()
    log = _train(*resume, "--resume_from_checkpoint", "latest", "--allow_inexact_resume")
    assert "another global batch (2 -> 3" in log
    lrs = _logged_lr(log)
    assert lrs[3] == pytest.approx(_linear_lr(3, 4), rel=1e-3)


def test_a_resume_with_another_model_type_is_refused(tmp_path):
    out = tmp_path / "run"
    common = [*TINY, "--train_images", "2", "--per_device_train_batch_size", "2", "--output_dir", str(out)]
    _train(*common, "--max_train_steps", "2", "--checkpointing_steps", "1", "--stop_after_steps", "1")
    rc, log = _run(
        *common, "--max_train_steps", "2", "--model_type", "metris", "--resume_from_checkpoint", "latest"
    )
    assert rc != 0 and "written by a 'instalign' model and this run builds a 'metris' model" in log
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_resume_with_augmentation_equals_an_uninterrupted_run(tmp_path, workers):
    """--tau_no / --tau_multi: 7 steps over 4 per epoch (24 rows, batch 6), killed after 6 (inside epoch 1).

    Without workers the augmentation's generator used to restart from its seed on resume (a different run);
    its draws are now a function of the seed, the epoch and the batch's rows."""
    common = [*TINY, "--train_images", "8", "--per_device_train_batch_size", "6", "--max_train_steps", "7"]
    common += ["--checkpointing_steps", "2", "--tau_no", "0.5", "--tau_multi", "0.5"]
    common += ["--dataloader_num_workers", workers, "--max_text_length", "24"]
    _train(*common, "--output_dir", str(tmp_path / "full"))
    _train(*common, "--output_dir", str(tmp_path / "resumed"), "--stop_after_steps", "6")
    _train(*common, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest")
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert max((full[k] - resumed[k]).abs().max().item() for k in full) == 0.0


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("refseg_train_script_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _RecordingAugmentation:
    """Stands in for PresencePluralityAugmentation: records one draw of its generator per batch."""

    def __init__(self):
        import random

        self.rng, self.draws = random.Random(0), []

    def __call__(self, rows: list[dict]) -> list[dict]:
        self.draws.append(self.rng.random())
        return rows


class _NoProcessor:
    def __call__(self, **kwargs) -> dict:
        return {}


def test_augmentation_draws_differ_between_epochs_and_batches_and_not_with_history(train_script):
    augment = _RecordingAugmentation()
    collate = train_script.make_collate_fn(_NoProcessor(), 8, augment=augment, seed=3)
    rows = [
        {train_script.INDEX_KEY: i, "image": Image.new("RGB", (4, 4)), "sentence": "", "instances": []}
        for i in range(4)
    ]
    for epoch in (0, 1, 0):
        collate.set_epoch(epoch)
        collate(rows[:2])
    collate.set_epoch(0)
    collate(rows[2:])
    epoch0, epoch1, epoch0_again, other_batch = augment.draws
    assert epoch0 != epoch1 and epoch0 != other_batch  # per epoch, per batch
    assert epoch0 == epoch0_again  # what was drawn before (another worker, skipped batches) does not matter


class _DrawInSentence:
    """An augmentation that writes one draw of its generator into the sentences of its batch."""

    def __init__(self):
        import random

        self.rng = random.Random(0)

    def __call__(self, rows: list[dict]) -> list[dict]:
        draw = self.rng.random()
        return [{**row, "sentence": str(draw)} for row in rows]


class _SentenceProcessor:
    def __call__(self, *, text: list[str], **kwargs) -> dict:
        return {"draw": text[0]}


def test_with_workers_the_augmentation_draws_differ_between_epochs_and_batches(train_script):
    """Each epoch used to start every worker from a copy of the same generator: the same draws every epoch."""
    from torch.utils.data import DataLoader

    collate = train_script.make_collate_fn(_SentenceProcessor(), 8, augment=_DrawInSentence(), seed=3)
    rows = train_script.IndexedRows(
        [{"image": Image.new("RGB", (4, 4)), "sentence": "", "instances": []} for _ in range(8)]
    )
    loader = DataLoader(
        rows, batch_size=2, num_workers=2, collate_fn=collate, worker_init_fn=train_script.seed_worker
    )
    draws = []
    for epoch in range(2):
        collate.set_epoch(epoch)
        draws.append([batch["draw"] for batch in loader])
    assert draws[0] != draws[1] and len(set(draws[0] + draws[1])) == 8


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--checkpointing_steps", "0", "--checkpointing_steps must be a positive integer or 'epoch'"),
        ("--logging_steps", "0", "--logging_steps must be a positive integer, got 0"),
        ("--max_train_steps", "-3", "--max_train_steps must be a positive integer, got -3"),
        ("--num_train_epochs", "0", "--num_train_epochs must be a positive integer, got 0"),
        ("--image_size", "0", "--image_size must be a positive integer, got 0"),
        ("--config_overrides", "{num_queries: 3}", "--config_overrides is not valid JSON"),
        ("--config_overrides", "[1]", "--config_overrides must be a JSON object"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(train_script, capsys, flag, value, message):
    with pytest.raises(SystemExit) as caught:
        train_script.parse_args(["--output_dir", "x", flag, value])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_dataset_smaller_than_one_batch_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    rc, log = _run(
        *TINY, "--train_images", "1", "--per_device_train_batch_size", "64", "--output_dir", str(out)
    )
    assert rc != 0 and "fewer than one batch (--per_device_train_batch_size 64 x 1 process(es))" in log
    assert "Traceback" not in log and not (out / "model.safetensors").exists()


def test_a_full_disk_while_checkpointing_stops_the_run_in_one_line(train_script, tmp_path, monkeypatch):
    import errno

    from accelerate import Accelerator

    def full_disk(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Accelerator, "save_state", full_disk)
    out = tmp_path / "run"
    argv = ["train.py", *TINY, "--train_images", "2", "--per_device_train_batch_size", "2"]
    monkeypatch.setattr(
        sys, "argv", [*argv, "--max_train_steps", "2", "--checkpointing_steps", "1", "--output_dir", str(out)]
    )
    with pytest.raises(SystemExit) as caught:
        train_script.cli()
    message = str(caught.value.code)
    assert message.startswith("train.py: error: no space left on device while saving checkpoint step_1")
    assert "\n" not in message and not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]
