"""Crash-safe training checkpoints around ``Accelerator.save_state`` / ``load_state``.

A checkpoint is a folder ``step_<N>`` or ``epoch_<E>`` of an output directory. It is written under a
hidden temporary name (``.tmp-step_<N>``), completed with the marker file ``refseg_checkpoint.json``
(the optimizer step, the epoch and the size of every file), and only then renamed into place, so a
process killed during the save leaves a hidden folder that is never resumed from. ``latest`` is the
complete checkpoint with the highest optimizer step. Resuming restores the RNG states strictly: a missing
or unreadable RNG file stops the resume (``allow_inexact=True`` continues with a warning that the run is
no longer exact) instead of the one INFO line of ``Accelerator.load_state``. The rename assumes, as
Accelerate does, that all processes write to one shared file system.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

MARKER_NAME = "refseg_checkpoint.json"
TMP_PREFIX = ".tmp-"
NAME_PATTERN = re.compile(r"(step|epoch)_(\d+)")
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from exactly (incomplete, foreign, corrupted)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its folder, the optimizer steps done and the epoch it was written in."""

    path: Path
    completed_steps: int
    epoch: int


def checkpoint_name(kind: str, index: int) -> str:
    """``step_<index>`` or ``epoch_<index>``, the only folder names a checkpoint may have."""
    if kind not in ("step", "epoch") or index < 0:
        raise ValueError(f"a checkpoint is named step_<N> or epoch_<N> with N >= 0, got {kind!r}, {index}")
    return f"{kind}_{index}"


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | os.PathLike, name: str, *, completed_steps: int, epoch: int
) -> Path:
    """``accelerator.save_state`` into ``output_dir/name`` atomically; every process must call it.

    All processes write into ``output_dir/.tmp-<name>``; after they all finished, the main process writes
    the completion marker and renames the folder to ``name`` (replacing an older checkpoint of that name).
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"checkpoint name {name!r} must be step_<N> or epoch_<N>")
    if accelerator.project_configuration.automatic_checkpoint_naming:
        raise ValueError(
            "save_checkpoint names its folders itself: use an Accelerator without automatic_checkpoint_naming"
        )
    output_dir = Path(output_dir)
    final, tmp = output_dir / name, output_dir / f"{TMP_PREFIX}{name}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left by a save that was killed
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {
            p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        for path in [tmp / f for f in files]:
            _fsync(path)
        marker = {
            "format": _FORMAT,
            "completed_steps": int(completed_steps),
            "epoch": int(epoch),
            "num_processes": accelerator.num_processes,
            "files": files,
        }
        marker_tmp = tmp / f"{MARKER_NAME}.partial"
        marker_tmp.write_text(json.dumps(marker, indent=1))
        _fsync(marker_tmp)
        os.replace(marker_tmp, tmp / MARKER_NAME)
        _fsync(tmp)
        if final.exists():  # an older checkpoint of the same name: move it aside, never leave both half-done
            old = output_dir / f"{TMP_PREFIX}old-{name}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync(output_dir)
    accelerator.wait_for_everyone()
    return final


def read_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Validate a checkpoint folder and return its position; :class:`CheckpointError` names what is wrong.

    The folder must be named ``step_<N>`` or ``epoch_<N>``, hold the completion marker, and every file the
    marker lists must be present with its recorded size (a truncated file means a damaged checkpoint).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    match = NAME_PATTERN.fullmatch(path.name)
    if match is None:
        raise CheckpointError(
            f"{path} is not a training checkpoint folder: its name must be step_<N> or epoch_<N> (as written "
            f"by --checkpointing_steps), got {path.name!r}"
        )
    marker_path = path / MARKER_NAME
    if not marker_path.is_file():
        raise CheckpointError(
            f"{path} is incomplete: it has no {MARKER_NAME} completion marker (the save was interrupted, or "
            "the folder was not written by this script)"
        )
    try:
        marker = json.loads(marker_path.read_text())
        completed_steps, epoch, files = int(marker["completed_steps"]), int(marker["epoch"]), marker["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{marker_path} is not a valid checkpoint marker: {error}") from error
    kind, index = match.group(1), int(match.group(2))
    if (kind == "step" and index != completed_steps) or (kind == "epoch" and index != epoch):
        raise CheckpointError(
            f"{path.name} does not match its marker (completed_steps {completed_steps}, epoch {epoch}): "
            "the folder was renamed"
        )
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
        if file.stat().st_size != size:
            raise CheckpointError(
                f"checkpoint {path} is damaged: {name} has {file.stat().st_size} bytes, {size} were written"
            )
    return CheckpointInfo(path=path, completed_steps=completed_steps, epoch=epoch)


def find_latest_checkpoint(output_dir: str | os.PathLike) -> CheckpointInfo | None:
    """The complete ``step_*`` / ``epoch_*`` checkpoint of ``output_dir`` with the most optimizer steps.

    Incomplete or damaged checkpoints are skipped with a warning; None if no complete one exists.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for path in sorted(output_dir.iterdir()):
        if not (path.is_dir() and NAME_PATTERN.fullmatch(path.name)):
            continue
        try:
            complete.append(read_checkpoint(path))
        except CheckpointError as error:
            logger.warning(f"skipping checkpoint {path.name}: {error}")
    # most steps first; at equal steps the step_ folder (mid-epoch position) and epoch_ folder hold one state
    return max(complete, key=lambda info: (info.completed_steps, info.path.name), default=None)


def resolve_checkpoint(checkpoint: str, output_dir: str | os.PathLike) -> CheckpointInfo:
    """``--resume_from_checkpoint``: ``"latest"`` (in ``output_dir``) or a checkpoint folder, validated."""
    if checkpoint == "latest":
        info = find_latest_checkpoint(output_dir)
        if info is None:
            raise CheckpointError(
                f"--resume_from_checkpoint latest: no complete step_*/epoch_* checkpoint in {output_dir}"
            )
        return info
    return read_checkpoint(checkpoint)


def _rng_file(path: Path, process_index: int) -> Path:
    from accelerate.utils import RNG_STATE_NAME

    return path / f"{RNG_STATE_NAME}_{process_index}.pkl"


def read_rng_states(path: str | os.PathLike, process_index: int) -> dict[str, Any]:
    """The RNG states a process saved in a checkpoint (``weights_only`` loading); CheckpointError if unreadable."""
    from accelerate.utils import load

    file = _rng_file(Path(path), process_index)
    if not file.is_file():
        raise CheckpointError(
            f"{file} is missing: the checkpoint holds no RNG state for process {process_index} (was it written "
            "with fewer processes?)"
        )
    try:
        states = load(file)  # accelerate's torch.load(weights_only=True) with numpy allow-listed
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read the RNG state file {file} ({reason})") from error
    missing = [k for k in ("random_state", "numpy_random_seed", "torch_manual_seed") if k not in states]
    if torch.cuda.is_available() and "torch_cuda_manual_seed" not in states:
        missing.append("torch_cuda_manual_seed (the checkpoint was written without CUDA)")
    if missing:
        raise CheckpointError(f"the RNG state file {file} lacks {', '.join(missing)}")
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the Python, NumPy, torch (and CUDA) generators to ``states`` (as saved by ``save_state``)."""
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])


def load_checkpoint(accelerator: Accelerator, info: CheckpointInfo, *, allow_inexact: bool = False) -> bool:
    """``accelerator.load_state`` of a validated checkpoint with a strict RNG restore.

    Returns True when the resume is exact. If this process's RNG state cannot be read or set, raises
    :class:`CheckpointError`, or with ``allow_inexact`` logs a warning that the resumed run is no longer
    an exact continuation and returns False. (``load_state`` itself only logs at INFO level in that case.)
    """
    try:
        states = read_rng_states(info.path, accelerator.process_index)
    except CheckpointError as error:
        if not allow_inexact:
            raise CheckpointError(
                f"{error}; resuming would not be exact (allow_inexact=True, --allow_inexact_resume in "
                "examples/train.py, continues anyway)"
            ) from error
        states = None
    accelerator.load_state(str(info.path))
    if states is not None:
        try:
            restore_rng_states(states)  # again, strictly: load_state swallows errors while setting them
            return True
        except Exception as error:
            if not allow_inexact:
                raise CheckpointError(
                    f"cannot restore the RNG states saved in {info.path}: {error}"
                ) from error
    logger.warning(
        f"process {accelerator.process_index}: the RNG states of {info.path} could not be restored; the "
        "resumed run is NOT an exact continuation of the interrupted one (--allow_inexact_resume)"
    )
    return False
