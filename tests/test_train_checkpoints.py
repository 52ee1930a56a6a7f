"""examples/train.py resumes only from complete checkpoints and refuses an inexact resume unless asked.

Each run is a subprocess on the tiny preset (64 px scenes, a few steps), as in test_train_script.py.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refseg.training.checkpoints import MARKER_NAME, sha256_of

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train.py"
ARGS = ["--config_preset", "tiny", "--per_device_train_batch_size", "2", "--train_images", "2"]
ARGS += ["--val_images", "2", "--max_train_steps", "6", "--checkpointing_steps", "2", "--skip_eval"]


def _run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *ARGS, *args], capture_output=True, text=True, env=env, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_resume_skips_half_written_checkpoints_and_fails_on_an_unreadable_rng_state(tmp_path):
    out = tmp_path / "run"
    rc, log = _run("--output_dir", str(out), "--stop_after_steps", "4")
    assert rc == 0, log[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["step_2", "step_4"]
    # what a kill during the next save leaves: a hidden temporary folder, and (from older versions) a
    # folder with a checkpoint name but no completion marker; neither may be resumed from
    shutil.copytree(out / "step_4", out / ".tmp-step_6")
    shutil.copytree(out / "step_4", out / "step_6")
    (out / "step_6" / "refseg_checkpoint.json").unlink()
    # step_4's RNG state written unreadable (its checksum recorded as written), keeping its size
    rng = out / "step_4" / "random_states_0.pkl"
    rng.write_bytes(b"\x80" * rng.stat().st_size)
    marker = json.loads((out / "step_4" / MARKER_NAME).read_text())
    marker["files"]["random_states_0.pkl"]["sha256"] = sha256_of(rng)
    (out / "step_4" / MARKER_NAME).write_text(json.dumps(marker))

    rc, log = _run("--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert rc != 0
    assert "skipping checkpoint step_6" in log and f"Resuming from checkpoint {out / 'step_4'}" in log
    assert "cannot read the RNG state file" in log and "resuming would not be exact" in log
    assert not (out / "model.safetensors").exists()

    rc, log = _run("--output_dir", str(out), "--resume_from_checkpoint", "latest", "--allow_inexact_resume")
    assert rc == 0, log[-3000:]
    assert "NOT an exact continuation" in log
    assert json.loads((out / "all_results.json").read_text())["completed_steps"] == 6
    assert (out / "step_6" / "refseg_checkpoint.json").is_file()  # rewritten, complete this time

    rc, log = _run("--output_dir", str(out), "--resume_from_checkpoint", str(tmp_path / "run"))
    assert rc != 0 and "name must be step_<N> or epoch_<N>" in log


@pytest.mark.slow
def test_a_bit_flip_in_the_latest_checkpoint_resumes_from_the_previous_one_saying_why(tmp_path):
    out = tmp_path / "run"
    rc, log = _run("--output_dir", str(out), "--stop_after_steps", "4")
    assert rc == 0, log[-3000:]
    weights = out / "step_4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of a weight: same size, still loadable
    weights.write_bytes(bytes(data))
    shutil.copytree(out / "step_4", tmp_path / "flipped" / "step_4")
    rc, log = _run("--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert rc == 0, log[-3000:]
    assert "skipping checkpoint step_4" in log and "SHA-256 of model.safetensors differs" in log
    assert "falling back to step_2" in log and f"Resuming from checkpoint {out / 'step_2'}" in log
    flipped = tmp_path / "flipped" / "step_4"
    rc, log = _run("--output_dir", str(tmp_path / "other"), "--resume_from_checkpoint", str(flipped))
    assert rc != 0 and "train.py: error: checkpoint" in log and "SHA-256 of model.safetensors" in log
