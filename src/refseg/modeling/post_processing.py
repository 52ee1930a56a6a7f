"""Shared steps of ``post_process_referring_segmentation``: model outputs -> the per-sample contract dicts.

Every model returns, per sample, ``{"mask", "no_target", "target_score", "instances", "semantic_mask"}``
(``docs/pipeline.md``): the union mask of the referred objects (all False when the sample is judged
no-target), the no-target decision, ``1 - P(no target)``, the instances with their boxes, and the
thresholded mask before the no-target decision (what the GRES metrics count, ``docs/metrics.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..validation import check_finite_logits

__all__ = ["output_field", "referring_segmentation_result", "target_size_list", "upsample_logits"]


#: how errors name the output fields
_FIELD_NAMES = {
    "pred_masks": "instance mask logits",
    "pred_scores": "instance scores",
    "pred_boxes": "boxes",
    "semantic_mask_logits": "semantic mask logits",
    "no_target_logits": "no-target logits",
}


def output_field(outputs: Any, name: str, *, finite: bool = True) -> torch.Tensor:
    """``outputs.<name>`` (a ModelOutput or a dict) detached as float32 on the CPU.

    Raises ``ValueError`` naming the field when it is missing, or (``finite=True``) when it holds NaN or
    ``+inf`` / ``-inf`` (:func:`refseg.validation.check_finite_logits`): an infinite logit would become a
    probability of exactly 0 or 1 and a confident-looking answer.
    """
    value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
    if value is None:
        raise ValueError(f"the model outputs have no '{name}'; post_process_referring_segmentation needs it")
    value = value.detach().float().cpu()
    if finite:
        check_finite_logits(value, f"{_FIELD_NAMES.get(name, name)} ({name})")
    return value


def target_size_list(
    target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None, batch: int, default: tuple[int, int]
) -> list[tuple[int, int]]:
    """Per sample ``(height, width)`` to post-process to (``default`` for all when ``None``), checked."""
    if target_sizes is None:
        target_sizes = [default] * batch
    if isinstance(target_sizes, torch.Tensor):
        target_sizes = target_sizes.tolist()
    if len(target_sizes) != batch:
        raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {batch}")
    sizes = []
    for b, target in enumerate(target_sizes):
        size = (int(target[0]), int(target[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"target size {size} of sample {b} must be positive")
        sizes.append(size)
    return sizes


def upsample_logits(logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(h, w) logits -> bilinear to the model input size -> bilinear to ``size`` (a new tensor)."""
    x = logits[None, None]
    if tuple(x.shape[-2:]) != tuple(input_size):
        x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    else:
        x = x.clone()
    return x[0, 0]


def referring_segmentation_result(
    semantic_mask: torch.Tensor,
    no_target_prob: float,
    no_target_threshold: float,
    instances: Callable[[torch.Tensor], list[dict[str, Any]]],
) -> dict[str, Any]:
    """The contract dict of one sample from its thresholded mask and its no-target probability.

    The sample is no-target when ``no_target_prob > no_target_threshold``: its ``mask`` is then all False and
    ``instances`` is empty; otherwise ``mask`` is ``semantic_mask`` and ``instances(mask)`` lists the instances.
    """
    no_target = no_target_prob > no_target_threshold
    if no_target:
        mask, found = torch.zeros(semantic_mask.shape, dtype=torch.bool), []
    else:
        mask, found = semantic_mask, instances(semantic_mask)
    return {
        "mask": mask,
        "no_target": bool(no_target),
        "target_score": 1.0 - no_target_prob,
        "instances": found,
        "semantic_mask": semantic_mask,
    }
