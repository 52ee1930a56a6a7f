"""Input checks shared by the task models' ``forward``: ``pixel_values``, ``attention_mask``, ``mask_labels``.

Every model validates its inputs once at its public boundary; these checks are the ones all of them make,
with the same messages (the shape, or the type when the value is not a tensor).

While ``torch.export`` or ``torch.compile`` traces a model, sizes may be symbolic (``torch.SymInt``) and tensor
values unknown: size limits then become ``torch._check`` constraints of the traced program, and checks that
read tensor values are skipped (:func:`is_tracing`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..validation import check_max_length

__all__ = [
    "check_attention_mask",
    "check_mask_labels",
    "check_pixel_values",
    "check_text_length",
    "is_tracing",
    "shape_or_type",
]


def shape_or_type(value: Any) -> Any:
    """``tuple(value.shape)`` for a tensor, else the type name (for error messages)."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def check_pixel_values(pixel_values: Any) -> tuple[int, int, int]:
    """``(B, H, W)`` of a (B, 3, H, W) tensor whose H and W are multiples of 32 (the Swin's largest stride)."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor, got {shape_or_type(pixel_values)}")
    batch, _, height, width = pixel_values.shape
    if height % 32 or width % 32:
        raise ValueError(f"pixel_values height and width must be multiples of 32, got {height}x{width}")
    return batch, height, width


def check_attention_mask(attention_mask: Any, input_ids: torch.Tensor) -> None:
    """``attention_mask``, when given, must be a tensor of the shape of ``input_ids``."""
    if attention_mask is not None and (
        not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape
    ):
        raise ValueError(
            f"attention_mask {shape_or_type(attention_mask)} must have the shape of input_ids {tuple(input_ids.shape)}"
        )


def check_mask_labels(mask_labels: Any, batch: int, height: int, width: int) -> None:
    """``mask_labels`` must be ``batch`` tensors (n_b, height, width), one per expression."""
    if not isinstance(mask_labels, (list, tuple)) or len(mask_labels) != batch:
        got = len(mask_labels) if isinstance(mask_labels, (list, tuple)) else type(mask_labels).__name__
        raise ValueError(f"mask_labels must be a list of {batch} tensors (one per expression), got {got}")
    for b, masks in enumerate(mask_labels):
        if (
            not isinstance(masks, torch.Tensor)
            or masks.dim() != 3
            or tuple(masks.shape[-2:]) != (height, width)
        ):
            raise ValueError(
                f"mask_labels[{b}] must be a (n, {height}, {width}) tensor at the pixel_values resolution, "
                f"got {shape_or_type(masks)}"
            )


def is_tracing() -> bool:
    """True while ``torch.export`` or ``torch.compile`` traces the model: input values are unknown then, so
    checks that read them (e.g. where the padding is) are skipped."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling()


def check_text_length(length: int | torch.SymInt, limit: int | None, what: str = "the text encoder") -> None:
    """The length of ``input_ids`` must lie in ``[1, limit]`` (the token positions ``what`` can embed).

    A symbolic length (``torch.export`` with a dynamic sequence axis) is constrained with ``torch._check``
    instead of being compared, so the exported program refuses longer inputs itself.
    """
    if isinstance(length, torch.SymInt):
        torch._check(length >= 1, lambda: "the length of input_ids must be a positive integer")
        if limit is not None:
            torch._check(
                length <= limit,
                lambda: f"the length of input_ids is beyond the {limit} token positions of {what}",
            )
        return
    check_max_length(length, limit, what, "the length of input_ids")
