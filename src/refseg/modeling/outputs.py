"""The output contract every refseg task model returns (``docs/pipeline.md``, "Model outputs").

A model returns :class:`ReferringSegmentationOutput` or a subclass that appends its own fields after the
shared ones. Post-processing, the pipeline, the metrics and the training scripts read the shared fields
as attributes; a field a model does not predict stays ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

__all__ = ["ReferringSegmentationOutput"]


@dataclass
class ReferringSegmentationOutput(ModelOutput):
    """What a referring segmentation model predicts for a batch of ``B`` (image, sentence) pairs.

    Args:
        loss: ``()`` the weighted total training loss, when labels are given.
        loss_dict: the unweighted loss terms by name (``loss_<term>``), when labels are given.
        semantic_mask_logits: ``(B, h, w)`` logits of the union of the referred objects; ``sigmoid`` is
            the per-pixel probability (a two-class head reports the foreground-minus-background logit).
            ``h, w`` is the model's output resolution, post-processing resizes to the image.
        no_target_logits: ``(B,)``; ``sigmoid`` is the probability that the sentence refers to nothing
            (a two-way head reports the no-target-minus-target logit).
        pred_masks: ``(B, Q, h, w)`` instance mask logits, for models with instance queries (or a single
            target query); ``None`` otherwise.
        pred_scores: ``(B, Q)`` instance relevance logits; ``sigmoid`` is the probability that query ``q``
            is one of the referred objects. ``None`` without instance queries.
        pred_boxes: ``(B, Q, 4)`` boxes as normalised ``(cx, cy, w, h)`` in ``[0, 1]`` of the processed
            image, for models with a box head; ``None`` otherwise (boxes then come from the masks).
    """

    loss: torch.Tensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    semantic_mask_logits: torch.Tensor | None = None
    no_target_logits: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    pred_scores: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
