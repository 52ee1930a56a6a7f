"""Crash-safe training checkpoints around ``Accelerator.save_state`` / ``load_state``.

A checkpoint is a folder ``step_<N>`` or ``epoch_<E>`` of an output directory. It is written under a
hidden temporary name (``.tmp-step_<N>``), completed with the marker file ``refseg_checkpoint.json``
(the optimizer step, the epoch, the run's settings and the size and SHA-256 of every file), and only then
renamed into place, so a process killed during the save leaves a hidden folder that is never resumed from.
A full disk during the save removes the partial folder and raises an ``OSError`` that says "no space left
on device". ``latest`` is the complete, intact checkpoint with the highest optimizer step: one whose files
do not match their checksums (a bit flip, a truncated copy) is skipped with a warning that names the file,
and the previous complete checkpoint is used. :func:`check_resume` compares the run's settings with the
checkpoint's (model type, process count, batch sizes). Resuming restores the RNG states strictly: a missing
or unreadable RNG file stops the resume (``allow_inexact=True`` continues with a warning that the run is
no longer exact) instead of the one INFO line of ``Accelerator.load_state``. The rename assumes, as
Accelerate does, that all processes write to one shared file system.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
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
_FORMAT = 2  # 1: files map to sizes; 2: files map to {"size", "sha256"}, plus "run"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from exactly (incomplete, foreign, corrupted)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its folder, the optimizer steps done, the epoch it was written in, the number
    of processes that wrote it and the run settings recorded with it (``run``, empty for older checkpoints)."""

    path: Path
    completed_steps: int
    epoch: int
    num_processes: int | None = None
    run: Mapping[str, Any] = field(default_factory=dict)


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


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _is_disk_full(error: BaseException, directory: Path) -> bool:
    """ENOSPC, or a writer's error (torch's "file write failed", safetensors' os error 28) on a full disk."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error).lower()
    if "no space left" in text or "os error 28" in text:
        return True
    if "write failed" in text or "failed writing" in text:
        try:
            return shutil.disk_usage(directory).free < 64 * 1024 * 1024
        except OSError:
            return False
    return False


def _free_space(directory: Path) -> str:
    try:
        return f"{shutil.disk_usage(directory).free / 2**20:.0f} MiB free"
    except OSError:
        return "free space unknown"


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    name: str,
    *,
    completed_steps: int,
    epoch: int,
    run: Mapping[str, Any] | None = None,
) -> Path:
    """``accelerator.save_state`` into ``output_dir/name`` atomically; every process must call it.

    All processes write into ``output_dir/.tmp-<name>``; after they all finished, the main process writes
    the completion marker (with ``run``, the settings :func:`check_resume` compares, and a SHA-256 per
    file) and renames the folder to ``name`` (replacing an older checkpoint of that name). A full disk
    removes the partial folder and raises ``OSError(ENOSPC, "no space left on device ...")``.
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
    try:
        accelerator.save_state(str(tmp))
    except (OSError, RuntimeError) as error:
        _raise_if_disk_full(error, tmp, name, output_dir)
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker = {
            "format": _FORMAT,
            "completed_steps": int(completed_steps),
            "epoch": int(epoch),
            "num_processes": accelerator.num_processes,
            "run": dict(run or {}),
        }
        try:
            _write_marker(tmp, marker)
        except OSError as error:
            _raise_if_disk_full(error, tmp, name, output_dir)
            raise
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


def _write_marker(tmp: Path, marker: dict[str, Any]) -> None:
    """Checksum every file of ``tmp``, then write the completion marker atomically (fsynced)."""
    files = {}
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            _fsync(path)
            files[path.relative_to(tmp).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    marker_tmp = tmp / f"{MARKER_NAME}.partial"
    marker_tmp.write_text(json.dumps({**marker, "files": files}, indent=1))
    _fsync(marker_tmp)
    os.replace(marker_tmp, tmp / MARKER_NAME)
    _fsync(tmp)


def _raise_if_disk_full(error: BaseException, tmp: Path, name: str, output_dir: Path) -> None:
    """On a full disk: remove the partial folder and raise an ``OSError`` that says so."""
    if not _is_disk_full(error, output_dir):
        return
    shutil.rmtree(tmp, ignore_errors=True)
    raise OSError(
        errno.ENOSPC,
        f"no space left on device while saving checkpoint {name} in {output_dir} ({_free_space(output_dir)}); "
        f"the partial folder {tmp.name} was removed and earlier checkpoints are intact: free some space "
        "(or write checkpoints less often) and resume with --resume_from_checkpoint latest",
    ) from error


def _check_files(path: Path, files: Mapping[str, Any], verify: bool) -> None:
    """Each listed file is present with its size and, with ``verify`` and a recorded hash, its SHA-256."""
    for name, entry in files.items():
        size, digest = (entry["size"], entry.get("sha256")) if isinstance(entry, Mapping) else (entry, None)
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
        if file.stat().st_size != size:
            raise CheckpointError(
                f"checkpoint {path} is damaged: {name} has {file.stat().st_size} bytes, {size} were written"
            )
        if verify and digest is not None and sha256_of(file) != digest:
            raise CheckpointError(
                f"checkpoint {path} is damaged: the SHA-256 of {name} differs from the one written at save time "
                "(a bit flip or a corrupted copy)"
            )


def read_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> CheckpointInfo:
    """Validate a checkpoint folder and return its position; :class:`CheckpointError` names what is wrong.

    The folder must be named ``step_<N>`` or ``epoch_<N>``, hold the completion marker, and every file the
    marker lists must be present with its recorded size (a truncated file means a damaged checkpoint) and,
    with ``verify``, its recorded SHA-256 (a bit flip; checkpoints written before checksums were recorded
    are checked by size only).
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
        num_processes = marker.get("num_processes")
        num_processes, run = (None if num_processes is None else int(num_processes)), marker.get("run") or {}
        if not isinstance(files, Mapping) or not isinstance(run, Mapping):
            raise TypeError("'files' and 'run' must be objects")
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{marker_path} is not a valid checkpoint marker: {error}") from error
    kind, index = match.group(1), int(match.group(2))
    if (kind == "step" and index != completed_steps) or (kind == "epoch" and index != epoch):
        raise CheckpointError(
            f"{path.name} does not match its marker (completed_steps {completed_steps}, epoch {epoch}): "
            "the folder was renamed"
        )
    try:
        _check_files(path, files, verify)
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{marker_path} is not a valid checkpoint marker: {error}") from error
    return CheckpointInfo(path, completed_steps, epoch, num_processes, dict(run))


def find_latest_checkpoint(output_dir: str | os.PathLike) -> CheckpointInfo | None:
    """The complete ``step_*`` / ``epoch_*`` checkpoint of ``output_dir`` with the most optimizer steps.

    Incomplete or damaged checkpoints (a size or SHA-256 that differs from the marker's) are skipped with a
    warning that says why and which checkpoint is used instead; None if no complete one exists. Checksums
    are computed only for the candidates tried, newest first.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for path in sorted(output_dir.iterdir()):
        if not (path.is_dir() and NAME_PATTERN.fullmatch(path.name)):
            continue
        try:
            complete.append(read_checkpoint(path, verify=False))
        except CheckpointError as error:
            logger.warning(f"skipping checkpoint {path.name}: {error}")
    # most steps first; at equal steps the step_ folder (mid-epoch position) and epoch_ folder hold one state
    complete.sort(key=lambda info: (info.completed_steps, info.path.name), reverse=True)
    for k, info in enumerate(complete):
        try:
            return read_checkpoint(info.path, verify=True)
        except CheckpointError as error:
            following = complete[k + 1].path.name if k + 1 < len(complete) else None
            instead = f"falling back to {following}" if following else "no earlier complete checkpoint"
            logger.warning(f"skipping checkpoint {info.path.name}: {error}; {instead}")
    return None


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


_BATCH_KEYS = ("num_processes", "per_device_train_batch_size", "gradient_accumulation_steps")
_DRAW_KEYS = ("seed", "tau_no", "tau_multi")  # the data order and the augmentation's draws


def check_resume(info: CheckpointInfo, run: Mapping[str, Any], *, allow_inexact: bool = False) -> list[str]:
    """Compare this run's settings with the checkpoint's; returns warnings, raises :class:`CheckpointError`.

    ``run`` holds ``model_type``, ``num_processes``, ``per_device_train_batch_size``,
    ``gradient_accumulation_steps`` and ``global_batch_size`` (what :func:`save_checkpoint` records). Another
    model type is always refused. Another global batch (samples per optimizer step) is refused unless
    ``allow_inexact`` (``--allow_inexact_resume``), which warns instead: the optimizer steps done stay the
    schedule's position, so the learning rate continues where it was. The same global batch split another
    way (e.g. 2 processes x b -> 1 process x 2b) only warns.
    """
    saved = dict(info.run)
    if info.num_processes is not None:
        saved.setdefault("num_processes", info.num_processes)
    old_type, new_type = saved.get("model_type"), run.get("model_type")
    if old_type and new_type and old_type != new_type:
        raise CheckpointError(
            f"{info.path} was written by a {old_type!r} model and this run builds a {new_type!r} model: a resume "
            "must use the same model type (use another --output_dir, or start from the trained weights with "
            "--model_name_or_path)"
        )
    changed = [
        f"{k} {saved[k]} -> {run[k]}" for k in _BATCH_KEYS if k in saved and k in run and saved[k] != run[k]
    ]
    old_batch, new_batch = saved.get("global_batch_size"), run.get("global_batch_size")
    step = f"optimizer step {info.completed_steps}"
    if old_batch is not None and new_batch is not None and old_batch != new_batch:
        if not allow_inexact:
            raise CheckpointError(
                f"{info.path} was trained with a global batch of {old_batch} samples per optimizer step and this run "
                f"has {new_batch} ({', '.join(changed)}): keep per-device batch x processes x accumulation = "
                f"{old_batch} to resume exactly, or pass --allow_inexact_resume (allow_inexact=True) to continue "
                f"with the new batch from {step}"
            )
        return [
            f"resuming with another global batch ({old_batch} -> {new_batch}: {', '.join(changed)}); the "
            f"learning-rate schedule continues at {step}, but the run is NOT the one an uninterrupted run would "
            "be (--allow_inexact_resume)"
        ]
    warnings = []
    if changed:
        unknown = "" if old_batch is not None else " (the checkpoint does not record its batch sizes)"
        warnings.append(
            f"resuming with {', '.join(changed)}{unknown}; the learning-rate schedule continues at {step}, the "
            "data order and per-process random states differ from an uninterrupted run"
        )
    other = [
        f"{k} {saved[k]} -> {run[k]}" for k in _DRAW_KEYS if k in saved and k in run and saved[k] != run[k]
    ]
    if other:
        warnings.append(
            f"resuming with {', '.join(other)}: the data order and augmentation draws change from here on"
        )
    return warnings


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
