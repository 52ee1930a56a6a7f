"""Image processor for TemplateModel: square resize, the paper's normalisation, and post-processing.

TODO(paper): the paper's pre-processing (section): input size, resize rule (square, or letterbox with a
``pixel_mask`` as ``refseg.models.presence_plurality`` does) and normalisation statistics. Decoding, validation
and the instance-mask conversion come from
``refseg.image_processing_utils.ReferringSegmentationImageProcessorBase``, which this class extends.

``post_process_referring_segmentation`` (shared by every model: it checks its arguments once, then calls
``_post_process``) upsamples the foreground logits to the input size and then to the image
size, thresholds them, takes the no-target decision from the no-target logit and returns the 8-connected
components of the mask as instances (the skeleton has no instance queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.connected_components import connected_component_instances
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.post_processing import referring_segmentation_result, upsample_logits
from .modeling_template_model import TemplateModelOutput

__all__ = ["TemplateModelImageProcessor"]

# TODO(paper): the paper's input size and statistics (section); the shared model tester checks the defaults
PAPER_IMAGE_SIZE = 480
PAPER_IMAGE_MEAN = (0.485, 0.456, 0.406)  # ImageNet
PAPER_IMAGE_STD = (0.229, 0.224, 0.225)


class TemplateModelImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Square resize to ``size``, rescale to [0, 1], normalise; optionally ``mask_labels``.

    Args:
        size: the model input ``{"height": h, "width": w}`` (or an int for a square); the paper's by default.
        image_mean, image_std: per-channel statistics; the paper's by default.
        Other arguments: as :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    def __init__(
        self,
        size: dict[str, int] | int | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            size=PAPER_IMAGE_SIZE if size is None else size,
            image_mean=PAPER_IMAGE_MEAN if image_mean is None else image_mean,
            image_std=PAPER_IMAGE_STD if image_std is None else image_std,
            **kwargs,
        )

    output_class = TemplateModelOutput
    # TODO(paper): the fields _post_process reads (required_output_fields, optional_output_fields; the default is
    # semantic_mask_logits and no_target_logits) and the paper's thresholds (default_threshold,
    # default_mask_threshold, default_no_target_threshold, default_instance_nms_threshold; 0.5, 0.5, 0.5, None)

    def _post_process(
        self,
        outputs: TemplateModelOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """The model's part of ``post_process_referring_segmentation`` (the contract of ``docs/pipeline.md``):
        reads ``semantic_mask_logits`` (B, h, w) and ``no_target_logits`` (B,), already checked by the shared
        method. Every threshold defaults to 0.5.

        - ``threshold``: unused (the skeleton scores no instances); accepted for the shared pipeline.
        - ``mask_threshold``: a pixel is foreground when its foreground probability exceeds it.
        - ``no_target_threshold``: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.
        - ``instance_nms_threshold``: mask NMS of the instances; off by default (connected components never
          overlap). Accepted so that every model takes the same arguments.

        Returns:
            ``[{"mask", "no_target", "target_score", "instances", "semantic_mask"}]``: ``instances`` are the
            8-connected components of ``mask`` (largest first) with their boxes, each scored with
            ``target_score``; ``semantic_mask`` is the mask before the no-target decision.
        """
        semantic = outputs.semantic_mask_logits
        no_target_logits = outputs.no_target_logits.reshape(-1)
        input_size = (self.size["height"], self.size["width"])
        results = []
        for b, size in enumerate(target_sizes):
            probabilities = upsample_logits(semantic[b], input_size, size).sigmoid()
            no_target_prob = float(torch.sigmoid(no_target_logits[b]))

            def components(union: torch.Tensor, score: float = 1.0 - no_target_prob) -> list[dict[str, Any]]:
                found = [{**inst, "score": score} for inst in connected_component_instances(union)]
                return suppress_duplicate_instances(found, instance_nms_threshold)

            results.append(
                referring_segmentation_result(
                    probabilities > mask_threshold, no_target_prob, no_target_threshold, components
                )
            )
        return results
