"""Image processor for ReLA: the released code's square resize, and post-processing into the shared contract.

The released code reads every image as RGB (EXIF orientation applied), resizes it to 480x480 with PIL's
bilinear filter on the 8-bit pixels (no aspect ratio kept, no padding) and normalises it on the 0-255 scale
with the ImageNet statistics (mean ``255 * (0.485, 0.456, 0.406)``, std ``255 * (0.229, 0.224, 0.225)``).
``pil_resize=True`` (the default) does exactly that for 8-bit images, so converted checkpoints see the
pixels they were trained on; other inputs (16-bit, float) take the shared antialiased torch resize.

``post_process_referring_segmentation`` upsamples the target-minus-background logit bilinearly to the input
size (as the original does), then to the image size, thresholds it, takes the no-target decision from the
no-target head, and returns the 8-connected components of the mask as instances (ReLA has no instance
queries; its region queries tile the image and are not objects).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch

from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.connected_components import connected_component_instances
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.post_processing import referring_segmentation_result, upsample_logits
from .modeling_rela import RelaOutput

__all__ = ["RelaImageProcessor", "pil_bilinear_resize"]


def pil_bilinear_resize(image: Any, size: tuple[int, int]) -> torch.Tensor | None:
    """``(3, h, w)`` float32 on the 0-255 scale: an 8-bit RGB/grey image resized with PIL's bilinear filter
    (the released code's ``ResizeTransform``), or ``None`` when ``image`` is not 8-bit."""
    if isinstance(image, PIL.Image.Image):
        if image.mode not in ("RGB", "L", "RGBA", "P", "LA"):
            return None
        pil = image.convert("RGB")
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
        array = image if image.ndim == 2 or image.shape[-1] in (1, 3, 4) else None
        if array is None:
            return None
        array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
        pil = PIL.Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    elif (
        isinstance(image, torch.Tensor)
        and image.dtype == torch.uint8
        and image.dim() == 3
        and image.shape[0] == 3
    ):
        pil = PIL.Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    else:
        return None
    resized = pil.resize((size[1], size[0]), PIL.Image.BILINEAR)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float()


class RelaImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Square resize to ``size`` (480 x 480), ImageNet normalisation; optionally ``mask_labels``.

    Args:
        pil_resize: resize 8-bit images with PIL's bilinear filter and normalise on the 0-255 scale, as the
            released code does (bit-identical inputs for converted checkpoints); ``False`` uses the shared
            antialiased torch resize (within one grey level of PIL).
        Other arguments: as :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    def __init__(self, pil_resize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pil_resize = pil_resize

    def _resolve_arguments(
        self, kwargs: dict[str, Any], return_tensors: str | None, *args: Any
    ) -> dict[str, Any]:
        """The shared arguments plus the statistics on the 8-bit scale (``255 * mean``, ``255 * std``), computed
        in float64 from the configured values so that they equal the original's float32 constants."""
        resolved = super()._resolve_arguments(kwargs, return_tensors, *args)
        mean = args[5] if args[5] is not None else self.image_mean
        std = args[6] if args[6] is not None else self.image_std
        scale = 1.0 / resolved["rescale_factor"]
        resolved["mean_8bit"] = torch.tensor([float(m) * scale for m in mean], dtype=torch.float32)
        resolved["std_8bit"] = torch.tensor([float(s) * scale for s in std], dtype=torch.float32)
        return resolved

    def _pixels(self, image: Any, resize_to: tuple[int, int] | None, args: dict[str, Any]) -> torch.Tensor:
        """One image -> ``(3, h, w)`` float32, through PIL for 8-bit images when ``pil_resize``."""
        if self.pil_resize and resize_to is not None and args["do_rescale"]:
            pixels = pil_bilinear_resize(image, resize_to)
            if pixels is not None:
                if args["do_normalize"]:
                    return (pixels - args["mean_8bit"][:, None, None]) / args["std_8bit"][:, None, None]
                return pixels * args["rescale_factor"]
        return super()._pixels(image, resize_to, args)

    output_class = RelaOutput

    def _post_process(
        self,
        outputs: RelaOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """ReLA's part of ``post_process_referring_segmentation`` (the contract of ``docs/pipeline.md``): reads
        ``semantic_mask_logits`` (B, h, w) and ``no_target_logits`` (B,). Every threshold defaults to 0.5.

        - ``threshold``: unused (ReLA scores no instances); accepted for the shared pipeline.
        - ``mask_threshold``: a pixel is foreground when the sigmoid of its upsampled target-minus-background
          logit exceeds it (0.5: the larger of the two classes, as the original decides).
        - ``no_target_threshold``: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.
        - ``instance_nms_threshold``: mask NMS of the instances; off by default (connected components never
          overlap). Accepted so that every model takes the same arguments.

        Returns:
            ``[{"mask", "no_target", "target_score", "instances", "semantic_mask"}]``: ``instances`` are the
            8-connected components of ``mask`` (largest first) with their boxes, each scored with
            ``target_score``; ``semantic_mask`` is the mask before the no-target decision (what the GRES
            metric counts for a wrongly rejected target).
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
