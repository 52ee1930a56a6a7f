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

Decoding, validation and the instance-mask conversion are shared with the square-resize processor of InstAlign,
which this class extends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from transformers.feature_extraction_utils import BatchFeature

from ..instalign.image_processing_instalign import (
    InstAlignImageProcessor,
    _instance_to_mask,
    _output_field,
    _to_chw_float,
    masks_to_boxes,
)

__all__ = ["PresencePluralityImageProcessor", "letterbox_size"]


def letterbox_size(height: int, width: int, canvas: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` of an image of ``(height, width)`` scaled to fit ``canvas`` with its aspect ratio kept."""
    scale = min(canvas[0] / height, canvas[1] / width)
    return max(1, min(canvas[0], round(height * scale))), max(1, min(canvas[1], round(width * scale)))


class PresencePluralityImageProcessor(InstAlignImageProcessor):
    r"""Letterbox to ``size`` (aspect ratio kept, bottom/right zero padding), rescale, normalise, ``pixel_mask``.

    Args:
        do_resize: scale each image to fit ``size``.
        size: the canvas ``{"height": h, "width": w}`` (or an int for a square); the paper uses 480.
        keep_aspect_ratio: letterbox (the paper); ``False`` stretches to ``size`` like InstAlign's processor.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as :class:`InstAlignImageProcessor`.
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(self, keep_aspect_ratio: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep_aspect_ratio = keep_aspect_ratio

    def content_size(self, height: int, width: int, size: dict[str, int] | None = None) -> tuple[int, int]:
        """Size of the image part of the canvas for an original image of ``(height, width)``."""
        size = self.size if size is None else self._size_dict(size)
        canvas = (size["height"], size["width"])
        return letterbox_size(height, width, canvas) if self.keep_aspect_ratio else canvas

    def preprocess(
        self,
        images: Any,
        instances: Sequence[Sequence[Any]] | None = None,
        do_resize: bool | None = None,
        size: dict[str, int] | int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Return ``pixel_values`` (B, 3, H, W), ``pixel_mask`` (B, H, W) long and, with ``instances``,
        ``mask_labels`` (list of (n_b, H, W) float) on the same canvas.

        ``instances[b]`` lists the referred instances of sample ``b`` (dataset instance dicts with a COCO RLE
        ``segmentation``, bare RLE dicts, or (H, W) masks at the image's original size); an empty list is a
        no-target sample. Without ``do_resize`` images are padded to the largest height and width of the batch.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments for PresencePluralityImageProcessor: {sorted(kwargs)}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else self._size_dict(size)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = torch.tensor(self.image_mean if image_mean is None else image_mean, dtype=torch.float32)
        std = torch.tensor(self.image_std if image_std is None else image_std, dtype=torch.float32)

        image_list = self.make_list_of_images(images)
        original_sizes = [self.image_size(image) for image in image_list]
        pixels, contents = [], []
        for image, (height, width) in zip(image_list, original_sizes):
            tensor = _to_chw_float(image, rescale_factor, do_rescale)
            if do_resize:
                content = self.content_size(height, width, size)
                if tuple(tensor.shape[1:]) != content:
                    tensor = F.interpolate(
                        tensor[None], size=content, mode="bilinear", align_corners=False, antialias=True
                    )[0]
            if do_normalize:
                tensor = (tensor - mean[:, None, None]) / std[:, None, None]
            pixels.append(tensor)
            contents.append(tuple(tensor.shape[1:]))
        if do_resize:
            canvas = (size["height"], size["width"])
        else:
            canvas = (max(c[0] for c in contents), max(c[1] for c in contents))
        pixel_values = torch.zeros(len(pixels), 3, *canvas)
        pixel_mask = torch.zeros(len(pixels), *canvas, dtype=torch.long)
        for b, (tensor, (h, w)) in enumerate(zip(pixels, contents)):
            pixel_values[b, :, :h, :w] = tensor
            pixel_mask[b, :h, :w] = 1
        data: dict[str, Any] = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        if instances is not None:
            data["mask_labels"] = self.prepare_mask_labels(instances, original_sizes, canvas, contents)
        return BatchFeature(data=data, tensor_type=None)

    def prepare_mask_labels(
        self,
        instances: Sequence[Sequence[Any]],
        original_sizes: Sequence[tuple[int, int]],
        target_size: tuple[int, int],
        content_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[torch.Tensor]:
        """Per sample, a float {0, 1} tensor (n_b, H, W): each instance mask resized (nearest) to the image part
        of the canvas (``content_sizes``, default: the letterbox of ``target_size``) and zero-padded."""
        if isinstance(instances, dict) or not isinstance(instances, list | tuple):
            raise ValueError("instances must be a list with one list of instances per image")
        if len(instances) != len(original_sizes):
            raise ValueError(f"got {len(original_sizes)} images but {len(instances)} instance lists")
        if content_sizes is None:
            content_sizes = [
                self.content_size(h, w, {"height": target_size[0], "width": target_size[1]})
                for h, w in original_sizes
            ]
        labels = []
        for b, (sample, (h, w), content) in enumerate(zip(instances, original_sizes, content_sizes)):
            sample = [] if sample is None else sample
            if isinstance(sample, dict) or not isinstance(sample, list | tuple):
                raise ValueError(f"instances[{b}] must be a list of instances, got {type(sample).__name__}")
            masks = [_instance_to_mask(inst) for inst in sample]
            for k, mask in enumerate(masks):
                if tuple(mask.shape) != (h, w):
                    raise ValueError(
                        f"instance {k} of sample {b} has a mask of size {tuple(mask.shape)} but the image is {(h, w)}"
                    )
            canvas = torch.zeros((len(masks), *target_size), dtype=torch.float32)
            if masks:
                stacked = torch.stack(masks).to(torch.float32)
                if tuple(stacked.shape[1:]) != tuple(content):
                    stacked = F.interpolate(stacked[None], size=tuple(content), mode="nearest")[0]
                canvas[:, : content[0], : content[1]] = stacked
            labels.append(canvas)
        return labels

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample (the referring-segmentation contract of ``docs/``).

        Args:
            outputs: a ``PresencePluralityOutput`` (or a dict) with ``semantic_mask_logits`` (B, H, W) on the
                letterboxed canvas and ``no_target_logits`` (B,).
            target_sizes: per sample ``(height, width)`` of the original image, from which the image part of
                the canvas is recomputed; ``None`` keeps the canvas (no cropping).
            threshold: unused (the model has one target, no instance scores); accepted for the shared pipeline.
            mask_threshold: a pixel is foreground when its foreground probability exceeds it (Sec. 3.4: 0.5).
            no_target_threshold: the sample is no-target when the probability that nothing is referred to
                exceeds it, i.e. the presence probability is below ``1 - no_target_threshold`` (Sec. 3.4: 0.5).

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask", "box",
            "score"}], "semantic_mask": bool (H, W)}]``. ``mask`` is empty when ``no_target``; ``instances``
            are the 8-connected components of ``mask`` (largest first), each with its box ``[x0, y0, x1, y1]``
            (exclusive ends) and the presence probability as score; ``semantic_mask`` is the thresholded mask
            before the presence decision (what GRES metrics count for a wrong no-target decision).
        """
        semantic = _output_field(outputs, "semantic_mask_logits").detach().float().cpu()
        no_target_logits = _output_field(outputs, "no_target_logits").detach().float().cpu().reshape(-1)
        batch = semantic.shape[0]
        if no_target_logits.shape[0] != batch:
            raise ValueError("the model outputs disagree on the batch size")
        canvas = tuple(semantic.shape[-2:])
        if target_sizes is None:
            target_sizes = [canvas] * batch
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if len(target_sizes) != batch:
            raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {batch}")
        structure = np.ones((3, 3), dtype=bool)
        results = []
        for b in range(batch):
            size = (int(target_sizes[b][0]), int(target_sizes[b][1]))
            content = self.content_size(*size, {"height": canvas[0], "width": canvas[1]})
            logits = semantic[b, : content[0], : content[1]]
            if tuple(logits.shape) != size:
                logits = F.interpolate(logits[None, None], size=size, mode="bilinear", align_corners=False)[
                    0, 0
                ]
            semantic_mask = logits.sigmoid() > mask_threshold
            no_target_prob = float(torch.sigmoid(no_target_logits[b]))
            no_target = no_target_prob > no_target_threshold
            mask = torch.zeros(size, dtype=torch.bool) if no_target else semantic_mask
            instances: list[dict[str, Any]] = []
            if mask.any():
                labels, count = ndimage.label(mask.numpy(), structure=structure)
                components = torch.from_numpy(labels)[None] == torch.arange(1, count + 1)[:, None, None]
                order = torch.argsort(components.flatten(1).sum(1), descending=True, stable=True)
                components = components[order]
                for component, box in zip(components, masks_to_boxes(components)):
                    instances.append({"mask": component, "box": box, "score": 1.0 - no_target_prob})
            results.append(
                {
                    "mask": mask,
                    "no_target": bool(no_target),
                    "target_score": 1.0 - no_target_prob,
                    "instances": instances,
                    "semantic_mask": semantic_mask,
                }
            )
        return results
