"""The ``forward`` prologue of every refseg model: unknown keyword arguments, then the inputs.

Every model validates its inputs once at its public boundary, with these checks and the same messages (the
shape, or the type when the value is not a tensor): :func:`reject_unknown_kwargs` first, then
:func:`check_image_text_inputs` (``pixel_values``, ``input_ids``, ``attention_mask``, the sentence length),
:func:`check_mask_labels` when labels are given, and :func:`check_values` for the rules on input values.
The checks read shapes only; :func:`check_values` asserts on values without a host synchronisation, so an
inference ``forward`` never waits for the accelerator before it has queued its work.

While ``torch.export`` or ``torch.compile`` traces a model, sizes may be symbolic (``torch.SymInt``) and tensor
values unknown: size limits then become ``torch._check`` constraints of the traced program, and checks that
read tensor values are skipped (:func:`is_tracing`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..validation import check_max_length

__all__ = [
    "check_attention_mask",
    "check_image_text_inputs",
    "check_mask_labels",
    "check_pixel_values",
    "check_text_length",
    "check_values",
    "is_tracing",
    "reject_unknown_kwargs",
    "shape_or_type",
]


def reject_unknown_kwargs(kwargs: Mapping[str, Any], function: Callable[..., Any]) -> None:
    """Raise ``TypeError`` naming every key of ``kwargs`` (with a close parameter name of ``function``) and
    the arguments ``function`` accepts.

    Models keep ``**kwargs`` in their ``forward`` (the transformers convention) but must not ignore a
    misspelt argument: ``labels=`` instead of ``mask_labels=`` would otherwise silently return no loss. Call it
    first thing: ``reject_unknown_kwargs(kwargs, self.forward)``.
    """
    if not kwargs:
        return
    parameters = [
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) and name != "self"
    ]
    owner = getattr(function, "__qualname__", getattr(function, "__name__", "forward"))
    described = []
    for name in kwargs:
        close = difflib.get_close_matches(name, parameters, n=1, cutoff=0.5)
        if not close:
            close = [p for p in parameters if p.endswith(f"_{name}") or p.startswith(f"{name}_")][:1]
        described.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise TypeError(
        f"{owner}() got unexpected keyword argument(s) {', '.join(described)}; "
        f"it accepts {', '.join(parameters)}"
    )


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


def check_image_text_inputs(
    pixel_values: Any,
    input_ids: Any,
    attention_mask: Any,
    text_limit: int | None,
    *,
    image_size: int | None = None,
    image_indices: Any = None,
    accepts_image_indices: bool = False,
) -> tuple[int, int, int]:
    """``(B, H, W)`` of checked ``pixel_values`` ``(B, 3, H, W)`` with one sentence per image in ``input_ids``
    ``(B, L)`` and an ``attention_mask`` of the shape of ``input_ids``; ``L`` at most ``text_limit``.

    ``image_size``: the one square size the model takes (else H and W are multiples of 32).
    ``image_indices``: a ``(B_text,)`` integer tensor pairing sentence ``j`` with image ``image_indices[j]``;
    then ``input_ids`` has ``B_text`` rows and the returned ``B`` is ``B_text``. Its range is asserted with
    :func:`check_values`. ``accepts_image_indices``: the model takes them (the error message says so).
    """
    if image_size is None:
        batch, height, width = check_pixel_values(pixel_values)
    else:
        if (
            not isinstance(pixel_values, torch.Tensor)
            or pixel_values.dim() != 4
            or pixel_values.shape[1] != 3
        ):
            raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor, got {shape_or_type(pixel_values)}")
        batch, _, height, width = pixel_values.shape
        if (height, width) != (image_size, image_size):
            raise ValueError(f"pixel_values must be {image_size}x{image_size}, got {height}x{width}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (B, L) tensor, got {shape_or_type(input_ids)}")
    if image_indices is not None:
        if (
            not isinstance(image_indices, torch.Tensor)
            or image_indices.dim() != 1
            or image_indices.is_floating_point()
        ):
            raise ValueError(
                "image_indices must be a 1-D integer tensor (one image index per sentence), got "
                f"{shape_or_type(image_indices)}"
            )
        if image_indices.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"image_indices has {image_indices.shape[0]} entries but input_ids has {input_ids.shape[0]} expressions"
            )
        check_values(
            ((image_indices >= 0) & (image_indices < batch)).all(),
            f"image_indices must lie in [0, {batch}) for {batch} image(s)",
        )
        batch = input_ids.shape[0]
    elif input_ids.shape[0] != batch:
        hint = (
            "image_indices to pair several expressions with one image"
            if accepts_image_indices
            else "one sentence per image"
        )
        raise ValueError(
            f"input_ids has batch size {input_ids.shape[0]} but pixel_values has {batch}; pass {hint}"
        )
    check_attention_mask(attention_mask, input_ids)
    check_text_length(input_ids.shape[1], text_limit)
    return batch, height, width


def check_values(condition: torch.Tensor, message: str) -> None:
    """Refuse inputs whose values break a rule: ``condition`` (a bool scalar tensor) must be True.

    No host synchronisation (``torch._assert_async``): on the CPU a broken rule raises ``ValueError(message)``
    at once; on an accelerator it is a device-side assertion, raised when the work is next synchronised (the
    CUDA context is then lost, as for an out-of-range index). Skipped while ``torch.export`` or
    ``torch.compile`` traces (values unknown, :func:`is_tracing`).
    """
    if is_tracing():
        return
    if condition.device.type != "cpu":
        torch._assert_async(condition, message)
        return
    try:
        torch._assert_async(condition, message)
    except RuntimeError:
        raise ValueError(message) from None


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
