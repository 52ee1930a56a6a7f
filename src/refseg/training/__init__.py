"""Training utilities shared by the example scripts: crash-safe checkpoints with an exact resume."""

from .checkpoints import (
    CheckpointError,
    CheckpointInfo,
    checkpoint_name,
    find_latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_rng_states,
    resolve_checkpoint,
    restore_rng_states,
    save_checkpoint,
)

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "checkpoint_name",
    "find_latest_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "read_rng_states",
    "resolve_checkpoint",
    "restore_rng_states",
    "save_checkpoint",
]
