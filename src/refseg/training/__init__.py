"""Training utilities shared by the example scripts: crash-safe checkpoints with an exact resume, and the
papers' training recipes (optimizer, parameter groups, schedule, clipping)."""

from .checkpoints import (
    CheckpointError,
    CheckpointInfo,
    check_resume,
    checkpoint_name,
    find_latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_rng_states,
    resolve_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from .recipes import (
    LearningRateGroup,
    TrainingRecipe,
    available_recipes,
    build_optimizer,
    get_recipe,
    parameter_groups,
)

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "LearningRateGroup",
    "TrainingRecipe",
    "available_recipes",
    "build_optimizer",
    "check_resume",
    "checkpoint_name",
    "find_latest_checkpoint",
    "get_recipe",
    "load_checkpoint",
    "parameter_groups",
    "read_checkpoint",
    "read_rng_states",
    "resolve_checkpoint",
    "restore_rng_states",
    "save_checkpoint",
]
