"""Checks every checkpoint converter makes before converting: finite values, the expected keys, their shapes.

A converter builds the key -> shape layout of the model its config describes (in the original's names) and
compares the file with it; each refusal is one ``ValueError`` of one line that names the tensors at fault
(shortened to a few names).
"""

from __future__ import annotations

import torch

__all__ = ["check_finite", "check_keys", "shape_message", "shape_problems", "short_list"]

_SHOWN = 8


def short_list(keys: list[str], shown: int = _SHOWN) -> str:
    """The first ``shown`` keys, comma-separated, and how many more there are."""
    text = ", ".join(keys[:shown])
    return text + (f" ... and {len(keys) - shown} more" if len(keys) > shown else "")


def _finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor`` (min and max in one pass: NaN propagates, inf shows at an end)."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor.detach())
    return bool(torch.isfinite(low) and torch.isfinite(high))


def check_finite(state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite values (a corrupt file or a diverged run), naming the tensors that hold them."""
    bad = [key for key, tensor in state_dict.items() if not _finite(tensor)]
    if bad:
        floating = sum(1 for tensor in state_dict.values() if tensor.is_floating_point())
        where = (
            f"in every one of its {floating} floating-point tensors"
            if len(bad) == floating > 1
            else f"in {len(bad)} of its {len(state_dict)} tensors ({short_list(bad)})"
        )
        raise ValueError(
            f"the checkpoint holds NaN or infinite values {where}: the file is corrupt or comes from a diverged "
            "training run, and cannot be converted"
        )


def check_keys(
    state_dict: dict[str, torch.Tensor], layout: dict[str, tuple[int, ...]], source: str, model_name: str
) -> None:
    """Every key of ``layout`` present and no other: else one line naming the missing or extra tensors."""
    missing = [key for key in layout if key not in state_dict]
    extra = [key for key in state_dict if key not in layout]
    if missing:
        raise ValueError(
            f"the checkpoint lacks {len(missing)} tensor(s) of the {source}: {short_list(missing)}"
        )
    if extra:
        raise ValueError(
            f"the checkpoint has {len(extra)} tensor(s) that are not {model_name} parameters: {short_list(extra)}"
        )


def shape_problems(
    state_dict: dict[str, torch.Tensor], layout: dict[str, tuple[int, ...]]
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(key, shape in the file, expected shape)`` for every tensor of the wrong shape."""
    return [
        (key, tuple(state_dict[key].shape), shape)
        for key, shape in layout.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]


def shape_message(problems: list[tuple[str, tuple[int, ...], tuple[int, ...]]], source: str) -> str:
    """One line about the first wrong shape (a transposed matrix named as such) and how many others there are."""
    key, found, expected = problems[0]
    transposed = len(found) == 2 and found == expected[::-1]
    more = f" ({len(problems) - 1} more tensor(s) of other shapes)" if len(problems) > 1 else ""
    return (
        f"{key} has shape {found} in the checkpoint, the {source} expects {expected}"
        + (": the tensor is transposed" if transposed else "")
        + more
    )
