"""Image processor for METRIS: the 480x480 squash resize with ImageNet normalisation, and post-processing.

METRIS (App. A) resizes inputs to 480 x 480; its Swin encoder expects the ImageNet statistics. Resizing,
rescaling, normalising and building ``mask_labels`` are the shared square resize of
``refseg.image_processing_utils.ReferringSegmentationImageProcessorBase``. ``post_process_referring_segmentation`` reads METRIS's single foreground map: the union mask
is the thresholded ``semantic_mask_logits``, the no-target decision comes from the no-target classifier
(App. A), and the instances are the connected components of the union mask (METRIS has no instance queries),
with boxes from their masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.connected_components import connected_component_instances
from ...modeling.instance_nms import check_nms_threshold, suppress_duplicate_instances
from ...modeling.post_processing import (
    output_field,
    referring_segmentation_result,
    target_size_list,
    upsample_logits,
)
from ...validation import check_finite_logits, check_probability
from .criterion import upsample_logits as upsample_like_the_loss

__all__ = ["MetrisImageProcessor"]


class MetrisImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Resize to ``size`` (480 x 480 by default), rescale to [0, 1], normalise; optionally ``mask_labels``.

    Takes the arguments of :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
        instance_nms_threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample.

        Args:
            outputs: a ``MetrisOutput`` (or a dict) with ``semantic_mask_logits`` (B, h, w) and
                ``no_target_logits`` (B,).
            target_sizes: per sample ``(height, width)`` of the original image; ``None`` keeps the model input size.
            threshold: instances (connected components) whose mean foreground probability is not above it are
                dropped.
            mask_threshold: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
            no_target_threshold: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.
            instance_nms_threshold: mask NMS of the instances (:mod:`refseg.modeling.instance_nms`); off by
                default (``None``): connected components never overlap, so it cannot drop one
                (``docs/models/metris.md``). Accepted so that every model takes the same arguments.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask": bool (H, W),
            "box": float [x0, y0, x1, y1], "score": float}], "semantic_mask": bool (H, W)}]``. The logits are
            upsampled bilinearly to the model input size with ``align_corners=True``, as in the loss and the
            code lineage (LAVT, CrossVLT), then to the target size. When the sample is judged
            no-target, ``mask`` is all False and ``instances`` is empty; ``semantic_mask`` is the thresholded
            map before that decision (ReLA's GRES evaluator counts it for a wrongly rejected target).
        """
        threshold = check_probability(threshold, "threshold")
        mask_threshold = check_probability(mask_threshold, "mask_threshold")
        no_target_threshold = check_probability(no_target_threshold, "no_target_threshold")
        instance_nms_threshold = check_nms_threshold(instance_nms_threshold)
        semantic = output_field(outputs, "semantic_mask_logits")
        no_target_logits = output_field(outputs, "no_target_logits", finite=False).reshape(-1)
        # -inf for every sample is MetrisOutput's "no no-target classifier"; anything else must be finite
        if not bool(torch.isneginf(no_target_logits).all()):
            check_finite_logits(no_target_logits, "no-target logits (no_target_logits)")
        batch = semantic.shape[0]
        if no_target_logits.shape[0] != batch:
            raise ValueError("the model outputs disagree on the batch size")
        input_size = (self.size["height"], self.size["width"])
        results = []
        for b, size in enumerate(target_size_list(target_sizes, batch, input_size)):
            at_input = upsample_like_the_loss(semantic[b][None, None], input_size)[0, 0]
            probabilities = upsample_logits(at_input, input_size, size).sigmoid()
            results.append(
                referring_segmentation_result(
                    probabilities > mask_threshold,
                    float(torch.sigmoid(no_target_logits[b])),
                    no_target_threshold,
                    lambda union, p=probabilities: suppress_duplicate_instances(
                        [
                            inst
                            for inst in connected_component_instances(union, p)
                            if inst["score"] > threshold
                        ],
                        instance_nms_threshold,
                    ),
                )
            )
        return results
