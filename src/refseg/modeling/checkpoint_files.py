"""Reading weight files that come from outside refseg (released checkpoints, pretraining files) safely.

A ``.safetensors`` file is read with safetensors; anything else with ``torch.load(weights_only=True)``, which
rebuilds only tensors and plain containers and never runs code from the file. Every way a file can fail to
load becomes one ``ValueError`` naming the file: a file that holds other objects (a pickled optimizer, a
config class) is refused for safety, and a truncated, foreign or garbage file is named as unreadable instead
of surfacing as an internal error of torch's zip or pickle readers.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

__all__ = ["read_weights_file"]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_weights_file(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """The object stored in the weights file ``path`` (usually a dict of tensors, or a dict holding one).

    Args:
        path: a ``.safetensors`` file, or a file written by ``torch.save``.
        what: what the file should be, for the error messages (e.g. ``"BEiT-3 checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file holds objects other than tensors and plain containers (not loaded for safety),
            or it cannot be read as either format.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as error:  # safetensors' own errors: bad header, truncated data
            raise ValueError(
                f"cannot read {path} as a {what} (a safetensors file): {_first_line(error)}"
            ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} cannot be loaded with torch.load(weights_only=True): {_first_line(error)}. Either it is not "
            "a PyTorch checkpoint, or it holds objects other than tensors and plain containers (a pickled "
            "optimizer or config class), which are not loaded for safety; re-save only its state dict "
            "(torch.save or safetensors) from a trusted environment"
        ) from error
    except Exception as error:  # not a zip / legacy torch file: truncated, foreign format, garbage
        raise ValueError(
            f"cannot read {path} as a {what} (a torch.save state dict or a safetensors file): "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error
