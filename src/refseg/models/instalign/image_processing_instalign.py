"""Image processor for InstAlign: the paper's square resize, rescale and ImageNet normalisation.

InstAlign (paper Sec. 4.1, "Implementation details") resizes every image to 480 x 480 and
normalises with the ImageNet statistics of its Swin backbone. This processor works on PIL images,
numpy arrays and torch tensors with torch only (no torchvision), so every image of a batch ends up
with the same size and batches stack without padding. Pixel types (8-bit, 16-bit, float) are
mapped to [0, 1] by ``refseg.image_utils.to_chw_float``; decoding, resizing and ``mask_labels`` come from
``refseg.image_processing_utils.ReferringSegmentationImageProcessorBase``, shared by every refseg image processor.

For training it also turns each sample's list of referred instances (the dataset rows' COCO RLE
masks) into ``mask_labels``: one float {0, 1} tensor ``(n_b, H, W)`` per sample at the model
input resolution (nearest-neighbour resize), the layout ``InstAlignForReferringSegmentation``
expects; ``n_b = 0`` encodes a no-target sample.

``post_process_referring_segmentation`` turns model outputs into the per-sample dicts described in
``docs/pipeline.md``: the union mask of the referred objects at the original image size (from the Adaptive
Instance Aggregation logits, eq. 8), the no-target decision (eq. 10-12) and the selected instances
with their boxes; ``InstAlignProcessor`` forwards to it.
"""

from __future__ import annotations

from typing import Any

import torch

from ...boxes import masks_to_boxes
from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.post_processing import referring_segmentation_result, upsample_logits
from .modeling_instalign import InstAlignOutput

__all__ = ["InstAlignImageProcessor", "masks_to_boxes"]


class InstAlignImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Resize to 480 x 480 (paper Sec. 4.1), rescale, normalise; ``mask_labels``; query-based post-processing.

    Takes the arguments of :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    output_class = InstAlignOutput
    required_output_fields = ("pred_masks", "pred_scores", "semantic_mask_logits", "no_target_logits")
    # InstAlign's training does not suppress duplicate queries (docs/models/instalign.md)
    default_instance_nms_threshold = 0.5

    def _post_process(
        self,
        outputs: InstAlignOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """InstAlign's part of ``post_process_referring_segmentation`` (``docs/pipeline.md``).

        Reads ``pred_masks`` (B, N, h, w), ``pred_scores`` (B, N), ``semantic_mask_logits`` (B, h, w) and
        ``no_target_logits`` (B,). Defaults: every threshold 0.5; ``instance_nms_threshold`` 0.5 (mask NMS of
        the instance list, :mod:`refseg.modeling.instance_nms`: InstAlign's training does not suppress
        duplicate queries, ``docs/models/instalign.md``; ``None`` or 1.0 turns it off; the union mask and
        ``semantic_mask`` do not change).

        - ``threshold``: an instance query is kept when ``sigmoid(pred_scores) > threshold``.
        - ``mask_threshold``: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
        - ``no_target_threshold``: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float,
            "instances": [{"mask": bool (H, W), "box": float [x0, y0, x1, y1], "score": float}]}]``. Logits are
            upsampled bilinearly to the model input size, then to the target size (the merged mask of the
            Adaptive Instance Aggregation, eq. 8; the no-target decision, eq. 10-12). The union mask is all
            False and ``instances`` is empty when the sample is judged no-target; instances are sorted by
            decreasing score and empty instance masks are dropped. ``"semantic_mask"`` is the thresholded merged
            mask *before* the no-target decision: ReLA's evaluator counts it in the union of a target sample
            wrongly judged no-target (``docs/metrics.md``), so metrics should be computed from it. Instance
            masks are upsampled one at a time, so memory stays O(image size) at any threshold.
        """
        pred_masks, pred_scores = outputs.pred_masks, outputs.pred_scores
        semantic = outputs.semantic_mask_logits
        no_target_logits = outputs.no_target_logits.reshape(-1)
        input_size = (self.size["height"], self.size["width"])

        def query_instances(b: int, size: tuple[int, int]):
            def instances(_union: torch.Tensor) -> list[dict[str, Any]]:
                scores = pred_scores[b].sigmoid()
                keep = torch.nonzero(scores > threshold).flatten()
                keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
                found = []
                for q in keep.tolist():  # one full-size float mask at a time: memory O(image size)
                    mask = self._binary_mask(pred_masks[b, q], input_size, size, mask_threshold)
                    if mask.any():
                        found.append(
                            {"mask": mask, "box": masks_to_boxes(mask[None])[0], "score": float(scores[q])}
                        )
                return suppress_duplicate_instances(found, instance_nms_threshold)

            return instances

        return [
            referring_segmentation_result(
                self._binary_mask(semantic[b], input_size, size, mask_threshold),
                float(torch.sigmoid(no_target_logits[b])),
                no_target_threshold,
                query_instances(b, size),
            )
            for b, size in enumerate(target_sizes)
        ]

    @staticmethod
    def _binary_mask(
        logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int], mask_threshold: float
    ) -> torch.Tensor:
        """(h, w) logits -> bilinear to the model input size -> bilinear to ``size`` -> bool ``sigmoid > t``.

        Works on one mask at a time and in place, so the peak is one float mask of ``size`` plus its bool.
        """
        return upsample_logits(logits, input_size, size).sigmoid_() > mask_threshold
