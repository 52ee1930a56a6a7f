"""refseg.training.checkpoints: atomic saves, ``latest`` among complete checkpoints, strict RNG restore."""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import refseg
from refseg.training import (
    CheckpointError,
    check_resume,
    checkpoint_name,
    find_latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_rng_states,
    resolve_checkpoint,
    save_checkpoint,
)
from refseg.training.checkpoints import MARKER_NAME, sha256_of


@pytest.fixture
def setup():
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def _step(model, optimizer):
    with torch.enable_grad():  # independent of a grad mode left by other tests in the process
        loss = model(torch.randn(4, 3)).square().mean()
        loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _save(accelerator, out, steps, kind="step", epoch=0):
    index = steps if kind == "step" else epoch
    return save_checkpoint(accelerator, out, checkpoint_name(kind, index), completed_steps=steps, epoch=epoch)


def _rewrite_marker_sizes(path: Path):
    """Record the files' current sizes and checksums: a checkpoint whose file was written wrong."""
    marker = json.loads((path / MARKER_NAME).read_text())
    marker["files"] = {
        name: {"size": (path / name).stat().st_size, "sha256": sha256_of(path / name)}
        for name in marker["files"]
    }
    (path / MARKER_NAME).write_text(json.dumps(marker))


def test_save_is_complete_and_resume_restores_weights_optimizer_and_rng_exactly(setup, tmp_path):
    accelerator, model, optimizer = setup
    _step(model, optimizer)
    final = _save(accelerator, tmp_path, 1)
    assert final == tmp_path / "step_1" and sorted(p.name for p in tmp_path.iterdir()) == ["step_1"]
    marker = json.loads((final / MARKER_NAME).read_text())
    assert (
        marker["completed_steps"] == 1 and marker["epoch"] == 0 and "random_states_0.pkl" in marker["files"]
    )
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, optimizer)
    expected = (random.random(), np.random.rand(), torch.rand(3))  # the draws right after the save
    _step(model, optimizer)  # move everything on

    info = resolve_checkpoint("latest", tmp_path)
    assert info.path == final and info.completed_steps == 1
    assert load_checkpoint(accelerator, info) is True
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    _step(model, optimizer)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])


def test_latest_is_the_complete_checkpoint_with_most_steps_not_the_newest_folder(setup, tmp_path):
    accelerator, _, _ = setup
    _save(accelerator, tmp_path, 10)
    _save(accelerator, tmp_path, 9)  # written later (newer mtime) but fewer steps
    _save(accelerator, tmp_path, 2)
    os.utime(tmp_path / "step_2")
    assert find_latest_checkpoint(tmp_path).path.name == "step_10"
    _save(accelerator, tmp_path, 12, kind="epoch", epoch=3)
    assert find_latest_checkpoint(tmp_path).path.name == "epoch_3"
    assert find_latest_checkpoint(tmp_path / "missing") is None


def test_an_interrupted_save_is_never_picked_by_latest(setup, tmp_path, monkeypatch, caplog):
    accelerator, _, _ = setup
    _save(accelerator, tmp_path, 2)
    real_save_state = accelerator.save_state

    def killed_midway(output_dir):
        real_save_state(output_dir)  # every file written, but the process dies before the marker
        raise KeyboardInterrupt

    monkeypatch.setattr(accelerator, "save_state", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(accelerator, tmp_path, 4)
    assert not (tmp_path / "step_4").exists() and (tmp_path / ".tmp-step_4").is_dir()
    # an older refseg (or a copy) left a folder with the right name but no marker: skipped, with a warning
    (tmp_path / "step_6").mkdir()
    (tmp_path / "step_6" / "model.safetensors").write_bytes(b"\0" * 10)
    with caplog.at_level(logging.WARNING, logger="refseg.training.checkpoints"):
        assert resolve_checkpoint("latest", tmp_path).path.name == "step_2"
    assert "skipping checkpoint step_6" in caplog.text and "no refseg_checkpoint.json" in caplog.text
    with pytest.raises(CheckpointError, match="step_6 is incomplete"):
        resolve_checkpoint(str(tmp_path / "step_6"), tmp_path)
    monkeypatch.undo()
    _save(accelerator, tmp_path, 4)  # the next save of that step clears the leftover
    assert (tmp_path / "step_4" / MARKER_NAME).is_file() and not (tmp_path / ".tmp-step_4").exists()
    assert resolve_checkpoint("latest", tmp_path).path.name == "step_4"


@pytest.mark.slow
def test_a_process_killed_during_save_state_leaves_latest_on_the_previous_checkpoint(tmp_path):
    """A real SIGKILL while ``save_state`` writes (after the optimizer file): only a hidden folder remains."""
    src = str(Path(refseg.__file__).resolve().parents[1])
    script = textwrap.dedent(f"""
        import os, signal, torch
        from accelerate import Accelerator
        from refseg.training import save_checkpoint
        accelerator = Accelerator(cpu=True)
        model, optimizer = accelerator.prepare(torch.nn.Linear(3, 2), torch.optim.SGD([torch.zeros(1)], lr=0.1))
        save_checkpoint(accelerator, {str(tmp_path)!r}, "step_2", completed_steps=2, epoch=0)
        real_save = torch.save
        def dying_save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if "optimizer" in str(f):
                os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        save_checkpoint(accelerator, {str(tmp_path)!r}, "step_4", completed_steps=4, epoch=1)
    """)
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / ".tmp-step_4" / "optimizer.bin").is_file() and not (tmp_path / "step_4").exists()
    assert resolve_checkpoint("latest", tmp_path).path == tmp_path / "step_2"


def test_foreign_renamed_and_damaged_folders_get_clear_errors(setup, tmp_path):
    accelerator, _, _ = setup
    final = _save(accelerator, tmp_path, 4)
    foreign = tmp_path / "my-checkpoint"
    final.rename(foreign)
    with pytest.raises(CheckpointError, match=r"name must be step_<N> or epoch_<N>.*'my-checkpoint'"):
        resolve_checkpoint(str(foreign), tmp_path)
    renamed = tmp_path / "step_5"
    foreign.rename(renamed)
    with pytest.raises(CheckpointError, match="does not match its marker .completed_steps 4"):
        read_checkpoint(renamed)
    renamed.rename(final)
    with (final / "optimizer.bin").open("r+b") as f:
        f.truncate(10)
    with pytest.raises(CheckpointError, match="damaged: optimizer.bin has 10 bytes"):
        read_checkpoint(final)
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        read_checkpoint(tmp_path / "step_99")
    with pytest.raises(CheckpointError, match="no complete step_\\*/epoch_\\* checkpoint"):
        resolve_checkpoint("latest", tmp_path)  # the only one is damaged
    with pytest.raises(ValueError, match="step_<N> or epoch_<N>"):
        checkpoint_name("best", 1)


def test_an_unreadable_rng_state_fails_the_resume_loudly(setup, tmp_path, caplog):
    accelerator, model, optimizer = setup
    final = _save(accelerator, tmp_path, 3)
    rng_file = final / "random_states_0.pkl"
    rng_file.write_bytes(b"garbage!" * (rng_file.stat().st_size // 8) + b"!" * (rng_file.stat().st_size % 8))
    _rewrite_marker_sizes(final)  # written like this: the checksum matches, only reading it tells
    info = read_checkpoint(final)
    with pytest.raises(
        CheckpointError, match="cannot read the RNG state file .*random_states_0.pkl.*not be exact"
    ):
        load_checkpoint(accelerator, info)
    with caplog.at_level(logging.WARNING, logger="refseg.training.checkpoints"):
        assert load_checkpoint(accelerator, info, allow_inexact=True) is False
    assert "NOT an exact continuation" in caplog.text
    with pytest.raises(CheckpointError, match="random_states_1.pkl is missing.*process 1"):
        read_rng_states(final, 1)  # resumed with more processes than it was written with


def test_an_rng_state_that_cannot_be_set_fails_instead_of_an_info_line(setup, tmp_path):
    """``Accelerator.load_state`` swallows this error; the strict restore does not."""
    accelerator, _, _ = setup
    final = _save(accelerator, tmp_path, 3)
    states = read_rng_states(final, 0)
    states["torch_manual_seed"] = torch.zeros(3, dtype=torch.uint8)  # not a torch generator state
    torch.save(states, final / "random_states_0.pkl")
    _rewrite_marker_sizes(final)
    with pytest.raises(CheckpointError, match="cannot restore the RNG states"):
        load_checkpoint(accelerator, read_checkpoint(final))
    del states["numpy_random_seed"]
    torch.save(states, final / "random_states_0.pkl")
    _rewrite_marker_sizes(final)
    with pytest.raises(CheckpointError, match="lacks numpy_random_seed"):
        load_checkpoint(accelerator, read_checkpoint(final))


def test_saving_again_under_an_existing_name_replaces_it_atomically(setup, tmp_path):
    accelerator, model, optimizer = setup
    _save(accelerator, tmp_path, 2, kind="epoch", epoch=0)
    _step(model, optimizer)
    _save(accelerator, tmp_path, 3, kind="epoch", epoch=0)
    assert read_checkpoint(tmp_path / "epoch_0").completed_steps == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0"]


def test_automatic_checkpoint_naming_is_refused(tmp_path):
    from accelerate.utils import ProjectConfiguration

    accelerator = Accelerator(
        cpu=True,
        project_config=ProjectConfiguration(project_dir=str(tmp_path), automatic_checkpoint_naming=True),
    )
    with pytest.raises(ValueError, match="automatic_checkpoint_naming"):
        _save(accelerator, tmp_path, 1)
    assert list(tmp_path.iterdir()) == []


def _flip_one_bit(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_bit_flip_is_caught_by_the_checksum_and_latest_falls_back(setup, tmp_path, caplog):
    accelerator, model, optimizer = setup
    _save(accelerator, tmp_path, 2)
    _step(model, optimizer)
    final = _save(accelerator, tmp_path, 4)
    entry = json.loads((final / MARKER_NAME).read_text())["files"]["model.safetensors"]
    assert entry["sha256"] == sha256_of(final / "model.safetensors")
    _flip_one_bit(final / "model.safetensors")  # same size: only the checksum tells
    with pytest.raises(CheckpointError, match="damaged: the SHA-256 of model.safetensors differs"):
        read_checkpoint(final)
    with caplog.at_level(logging.WARNING, logger="refseg.training.checkpoints"):
        assert resolve_checkpoint("latest", tmp_path).path == tmp_path / "step_2"
    assert "skipping checkpoint step_4" in caplog.text and "SHA-256 of model.safetensors" in caplog.text
    assert "falling back to step_2" in caplog.text


def test_a_full_disk_during_the_save_names_it_and_leaves_the_previous_checkpoint(
    setup, tmp_path, monkeypatch
):
    import errno

    accelerator, _, _ = setup
    _save(accelerator, tmp_path, 2)
    real_save_state = accelerator.save_state

    def full_disk(output_dir):
        real_save_state(output_dir)  # some files written, then the writer fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(accelerator, "save_state", full_disk)
    with pytest.raises(OSError, match="no space left on device while saving checkpoint step_4") as caught:
        _save(accelerator, tmp_path, 4)
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2"]  # the partial folder is removed
    assert resolve_checkpoint("latest", tmp_path).path == tmp_path / "step_2"


def _run(model_type="instalign", processes=1, batch=2, accumulation=1) -> dict:
    return {
        "model_type": model_type,
        "num_processes": processes,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": processes * batch * accumulation,
    }


def test_resume_compares_model_type_and_batch_settings(setup, tmp_path):
    accelerator, _, _ = setup
    final = save_checkpoint(
        accelerator, tmp_path, "step_3", completed_steps=3, epoch=0, run=_run(processes=2)
    )
    info = read_checkpoint(final)
    assert info.run["global_batch_size"] == 4 and info.num_processes == 1
    assert check_resume(info, _run(processes=2)) == []
    with pytest.raises(
        CheckpointError, match="written by a 'instalign' model and this run builds a 'metris'"
    ):
        check_resume(info, _run("metris", processes=2), allow_inexact=True)
    # 2 processes x 2 -> 1 process x 4: the same global batch, a warning
    [warning] = check_resume(info, _run(processes=1, batch=4))
    assert "num_processes 2 -> 1" in warning and "continues at optimizer step 3" in warning
    # another global batch: refused, or a warning with --allow_inexact_resume
    with pytest.raises(CheckpointError, match="global batch of 4 .* this run has 2 .*--allow_inexact_resume"):
        check_resume(info, _run(processes=1, batch=2))
    [warning] = check_resume(info, _run(processes=1, batch=2), allow_inexact=True)
    assert "another global batch (4 -> 2" in warning and "NOT the one" in warning
    # the augmentation's settings (its draws are seeded from the seed, the epoch and the rows)
    final = save_checkpoint(accelerator, tmp_path, "step_4", completed_steps=4, epoch=0, run={"tau_no": 0.05})
    [warning] = check_resume(read_checkpoint(final), {"tau_no": 0.1})
    assert "tau_no 0.05 -> 0.1" in warning and "augmentation draws change" in warning


def test_a_checkpoint_without_run_settings_still_warns_about_the_process_count(setup, tmp_path):
    accelerator, _, _ = setup
    final = _save(accelerator, tmp_path, 3)
    marker = json.loads((final / MARKER_NAME).read_text())
    marker.pop("run")
    marker["num_processes"] = 2  # as written by an earlier version with 2 processes
    (final / MARKER_NAME).write_text(json.dumps(marker))
    [warning] = check_resume(read_checkpoint(final), _run())
    assert "num_processes 2 -> 1" in warning and "does not record its batch sizes" in warning
