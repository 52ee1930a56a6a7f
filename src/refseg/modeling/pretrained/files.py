"""Reading weight files that come from outside refseg (released checkpoints, pretraining files) safely.

A ``.safetensors`` file is read with safetensors; anything else with ``torch.load(weights_only=True)``, which
rebuilds only tensors and plain containers and never runs code from the file. Released training checkpoints
also hold the optimizer and scheduler states (plain containers) and evaluation metrics as numpy scalars: those
scalars, and nothing else, are allowed on top (:mod:`refseg.modeling.pretrained.safe_globals`). Every way a file can
fail to load becomes one ``ValueError`` of one plain line naming the file: a file that holds other objects (a
pickled config class, a payload that would call a function) is refused for safety, and a truncated, foreign
or garbage file is named as unreadable instead of surfacing as an internal error of torch's zip or pickle
readers. The messages never repeat torch's advice to load with ``weights_only=False``.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from .safe_globals import numpy_scalar_globals

__all__ = ["read_state_dict", "read_weights_file"]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Lines of torch's weights-only error that are advice (some of it to load unsafely), not the reason.
_TORCH_ADVICE = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")


def _plain(text: str) -> str:
    """``text`` as one line without terminal escape codes."""
    return " ".join(_ANSI.sub("", text).split())


def _first_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


def _unpickler_detail(error: BaseException) -> str:
    """What torch's weights-only unpickler objected to, without its advice to turn safe loading off."""
    text = _ANSI.sub("", str(error))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines()]
    detail = " ".join(line for line in lines if line and not line.startswith(_TORCH_ADVICE))
    return _plain(detail.split("Please use `torch.serialization")[0]) or type(error).__name__


def _unsafe_message(path: str, what: str, detail: str) -> str:
    """One line for a file refused by the weights-only unpickler."""
    glob = re.match(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) (\S+)", detail)
    call = re.match(r"Trying to call reduce for unrecognized function (.+)", detail)
    if glob or call:
        name = glob[1] if glob else call[1]
        return (
            f"{path} cannot be loaded with torch.load(weights_only=True): it holds {name}, which is not a "
            "tensor, a number or a plain container. It was not loaded for safety: refseg never runs code from a "
            "weights file"
        )
    if re.match(r"Unsupported operand", detail):
        return f"cannot read {path} as a {what}: it is neither a torch.save file nor a safetensors file ({detail})"
    return (
        f"{path} cannot be loaded with torch.load(weights_only=True): {detail}. Either it is not a PyTorch "
        "checkpoint, or it holds objects other than tensors, numbers and plain containers, which are not loaded "
        "for safety"
    )


def read_weights_file(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """The object stored in the weights file ``path`` (usually a dict of tensors, or a dict holding one).

    Args:
        path: a ``.safetensors`` file, or a file written by ``torch.save`` (zip or legacy format).
        what: what the file should be, for the error messages (e.g. ``"BEiT-3 checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file holds objects other than tensors, numbers (numpy scalars included) and plain
            containers (not loaded for safety), or it cannot be read as either format.
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
    if os.path.getsize(path) == 0:
        raise ValueError(f"cannot read {path} as a {what}: the file is empty")
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(_unsafe_message(path, what, _unpickler_detail(error))) from error
    except Exception as error:  # not a zip / legacy torch file: truncated, foreign format, garbage
        raise ValueError(
            f"cannot read {path} as a {what} (a torch.save state dict or a safetensors file): "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error


def read_state_dict(
    path: str | os.PathLike,
    what: str = "checkpoint",
    entries: tuple[str, ...] = ("state_dict", "model", "module"),
) -> dict[str, torch.Tensor]:
    """The tensors of the weights file ``path``, read safely with :func:`read_weights_file`.

    Training scripts save the state dict bare or inside a dict with other states (``{"model": ..., "optimizer":
    ..., "epoch": ...}``): the first of ``entries`` that holds a dict is taken, else the file's dict itself. A
    ``module.`` prefix (left by ``DataParallel`` / ``DistributedDataParallel``) is removed from every key.
    Converters and pretraining loaders map the result with their own key map.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file cannot be read safely (see :func:`read_weights_file`), holds no dict, or its state
            dict holds values other than tensors.
    """
    checkpoint = read_weights_file(path, what=what)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{os.fspath(path)} does not contain a state dict (got {type(checkpoint).__name__})")
    state_dict = next(
        (checkpoint[key] for key in entries if isinstance(checkpoint.get(key), dict)), checkpoint
    )
    if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise ValueError(f"{os.fspath(path)}: the state dict holds non-tensor values")
    prefix = "module."
    return {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state_dict.items()}
