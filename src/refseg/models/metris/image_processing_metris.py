"""Image processor for METRIS: the 480x480 squash resize with ImageNet normalisation, and post-processing.

METRIS (App. A) resizes inputs to 480 x 480; its Swin encoder expects the ImageNet statistics. Resizing,
rescaling, normalising and building ``mask_labels`` are the shared square resize of
``refseg.image_processing_utils.ReferringSegmentationImageProcessorBase``. ``post_process_referring_segmentation`` reads METRIS's single foreground map: the union mask
is the thresholded ``semantic_mask_logits``, the no-target decision comes from the no-target classifier
(App. A), and the instances are the connected components of the union mask (METRIS has no instance queries),
with boxes from their masks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.connected_components import connected_component_instances
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.post_processing import referring_segmentation_result, upsample_logits
from .criterion import upsample_logits as upsample_like_the_loss
from .modeling_metris import MetrisOutput

__all__ = ["MetrisImageProcessor"]


class MetrisImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Resize to ``size`` (480 x 480 by default), rescale to [0, 1], normalise; optionally ``mask_labels``.

    Takes the arguments of :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    output_class = MetrisOutput

    def _check_finite(self, outputs: MetrisOutput) -> None:
        """As every model, except that ``no_target_logits`` of ``-inf`` for every sample is MetrisOutput's
        "no no-target classifier" (never no-target)."""
        if bool(torch.isneginf(outputs.no_target_logits).all()):
            outputs = dataclasses.replace(
                outputs, no_target_logits=torch.zeros_like(outputs.no_target_logits)
            )
        super()._check_finite(outputs)

    def _post_process(
        self,
        outputs: MetrisOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """METRIS's part of ``post_process_referring_segmentation``: reads ``semantic_mask_logits`` (B, h, w)
        and ``no_target_logits`` (B,). Every threshold defaults to 0.5.

        - ``threshold``: instances (connected components) whose mean foreground probability is not above it are
          dropped.
        - ``mask_threshold``: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
        - ``no_target_threshold``: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.
        - ``instance_nms_threshold``: off by default (``None``): connected components never overlap, so it
          cannot drop one (``docs/models/metris.md``). Accepted so that every model takes the same arguments.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask": bool (H, W),
            "box": float [x0, y0, x1, y1], "score": float}], "semantic_mask": bool (H, W)}]``. The logits are
            upsampled bilinearly to the model input size with ``align_corners=True``, as in the loss and the
            code lineage (LAVT, CrossVLT), then to the target size. When the sample is judged
            no-target, ``mask`` is all False and ``instances`` is empty; ``semantic_mask`` is the thresholded
            map before that decision (ReLA's GRES evaluator counts it for a wrongly rejected target).
        """
        semantic = outputs.semantic_mask_logits
        no_target_logits = outputs.no_target_logits.reshape(-1)
        input_size = (self.size["height"], self.size["width"])
        results = []
        for b, size in enumerate(target_sizes):
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
