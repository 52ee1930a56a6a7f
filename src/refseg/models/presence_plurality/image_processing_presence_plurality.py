"""Image processor for the presence & plurality model: letterbox resize with a ``pixel_mask``.

The paper resizes "input images to 480x480 pixels while maintaining their aspect ratio through padding"
(Sec. 4.2). The paper does not specify the placement; we scale the long side to 480 and pad at the bottom and
right with zeros after normalisation, because then the image keeps its top-left origin and pixel coordinates
map back by one scale factor. ``pixel_mask`` (1 = image, 0 = padding) tells the pixel decoder and the loss
which pixels are real. Instance masks become ``mask_labels`` on the same canvas (nearest resize, zero
padding).

``post_process_referring_segmentation`` crops the padding away, resizes the foreground probability to the
original image size, empties the mask when the presence head says nothing is referred to (Sec. 3.4), and
returns the connected components of the mask as instances with their boxes (the model has no instance
queries).

Decoding, validation and the instance-mask conversion come from
``refseg.image_processing_utils.ReferringSegmentationImageProcessorBase``, which this class extends.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.connected_components import connected_component_instances
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.post_processing import referring_segmentation_result
from .modeling_presence_plurality import PresencePluralityOutput

__all__ = ["PresencePluralityImageProcessor", "letterbox_size"]


def letterbox_size(height: int, width: int, canvas: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` of an image of ``(height, width)`` scaled to fit ``canvas`` with its aspect ratio kept."""
    scale = min(canvas[0] / height, canvas[1] / width)
    return max(1, min(canvas[0], round(height * scale))), max(1, min(canvas[1], round(width * scale)))


class PresencePluralityImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Letterbox to ``size`` (aspect ratio kept, bottom/right zero padding), rescale, normalise, ``pixel_mask``.

    Args:
        do_resize: scale each image to fit ``size``.
        size: the canvas ``{"height": h, "width": w}`` (or an int for a square); the paper uses 480.
        keep_aspect_ratio: letterbox (the paper); ``False`` stretches to ``size`` like the square-resize processors.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as
            :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(self, keep_aspect_ratio: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep_aspect_ratio = keep_aspect_ratio

    def content_size(self, height: int, width: int, size: dict[str, int] | None = None) -> tuple[int, int]:
        """Size of the image part of the canvas for an original image of ``(height, width)``."""
        canvas = super().content_size(height, width, size)
        return letterbox_size(height, width, canvas) if self.keep_aspect_ratio else canvas

    def _batch_pixels(
        self, pixels: list[torch.Tensor], size: dict[str, int] | None
    ) -> tuple[dict[str, Any], tuple[int, int], list[tuple[int, int]]]:
        """Paste each image at the top-left of the canvas (``size``, or without ``do_resize`` the largest height
        and width of the batch): ``pixel_values`` (B, 3, H, W) zero-padded and ``pixel_mask`` (B, H, W) long,
        1 on the image. ``mask_labels`` are built on the same canvas."""
        contents = [tuple(tensor.shape[1:]) for tensor in pixels]
        if size is not None:
            canvas = (size["height"], size["width"])
        else:
            canvas = (max(c[0] for c in contents), max(c[1] for c in contents))
        pixel_values = torch.zeros(len(pixels), 3, *canvas)
        pixel_mask = torch.zeros(len(pixels), *canvas, dtype=torch.long)
        for b, (tensor, (h, w)) in enumerate(zip(pixels, contents)):
            pixel_values[b, :, :h, :w] = tensor
            pixel_mask[b, :h, :w] = 1
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}, canvas, contents

    output_class = PresencePluralityOutput

    def _default_target_size(self, outputs: PresencePluralityOutput) -> tuple[int, int]:
        """Without ``target_sizes`` the results keep the letterboxed canvas of the logits (no cropping)."""
        return tuple(outputs.semantic_mask_logits.shape[-2:])

    def _post_process(
        self,
        outputs: PresencePluralityOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """The model's part of ``post_process_referring_segmentation`` (the referring-segmentation contract of
        ``docs/``): reads ``semantic_mask_logits`` (B, H, W) on the letterboxed canvas and ``no_target_logits``
        (B,). The image part of the canvas is recomputed from each target size. Every threshold defaults to 0.5.

        - ``threshold``: unused (the model has one target, no instance scores); accepted for the shared pipeline.
        - ``mask_threshold``: a pixel is foreground when its foreground probability exceeds it (Sec. 3.4: 0.5).
        - ``no_target_threshold``: the sample is no-target when the probability that nothing is referred to
          exceeds it, i.e. the presence probability is below ``1 - no_target_threshold`` (Sec. 3.4: 0.5).
        - ``instance_nms_threshold``: off by default (``None``): connected components never overlap, so it
          cannot drop one (``docs/models/presence_plurality.md``). Accepted so that every model takes the same
          arguments.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask", "box",
            "score"}], "semantic_mask": bool (H, W)}]``. ``mask`` is empty when ``no_target``; ``instances``
            are the 8-connected components of ``mask`` (largest first), each with its box ``[x0, y0, x1, y1]``
            (exclusive ends) and the presence probability as score; ``semantic_mask`` is the thresholded mask
            before the presence decision (what GRES metrics count for a wrong no-target decision).
        """
        semantic = outputs.semantic_mask_logits
        no_target_logits = outputs.no_target_logits.reshape(-1)
        canvas = tuple(semantic.shape[-2:])
        results = []
        for b, size in enumerate(target_sizes):
            content = self.content_size(*size, {"height": canvas[0], "width": canvas[1]})
            logits = semantic[b, : content[0], : content[1]]
            if tuple(logits.shape) != size:
                logits = F.interpolate(logits[None, None], size=size, mode="bilinear", align_corners=False)[
                    0, 0
                ]
            no_target_prob = float(torch.sigmoid(no_target_logits[b]))

            def components(union: torch.Tensor, score: float = 1.0 - no_target_prob) -> list[dict[str, Any]]:
                # largest first: every component scores 1.0 in connected_component_instances, ties go by area
                found = [{**inst, "score": score} for inst in connected_component_instances(union)]
                return suppress_duplicate_instances(found, instance_nms_threshold)

            results.append(
                referring_segmentation_result(
                    logits.sigmoid() > mask_threshold, no_target_prob, no_target_threshold, components
                )
            )
        return results
