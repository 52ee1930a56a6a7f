"""Base image processor of the referring-segmentation models: resize, rescale, normalise, ``mask_labels``.

Every refseg image processor decodes images the same way (PIL images, numpy arrays and torch tensors,
torch only, no torchvision; pixel types mapped to [0, 1] by ``refseg.image_utils.to_chw_float``),
resizes bilinearly with antialiasing, normalises per channel, and turns each sample's list of referred
instances (the dataset rows' COCO RLE masks) into ``mask_labels``: one float {0, 1} tensor ``(n_b, H, W)``
per sample at the model input resolution (nearest-neighbour resize), ``n_b = 0`` for a no-target sample.
:class:`ReferringSegmentationImageProcessorBase` implements the square (stretching) resize; a model
that letterboxes overrides :meth:`~ReferringSegmentationImageProcessorBase.content_size` and ``preprocess``.
``post_process_referring_segmentation`` comes from
:class:`~refseg.modeling.post_processing.ReferringSegmentationPostProcessor`: it checks its arguments once and
calls the model's ``_post_process`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .image_utils import check_image_input, image_size, make_list_of_images, resize_to_chw_float
from .modeling.post_processing import ReferringSegmentationPostProcessor
from .validation import check_image_statistics, check_positive_size

__all__ = ["ReferringSegmentationImageProcessorBase", "instance_to_mask"]


def instance_to_mask(instance: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A dataset instance dict (``segmentation`` RLE), a bare RLE dict or an (H, W) array -> bool mask.

    ``size``: the image's ``(height, width)``; an RLE claiming another size is refused before it is decoded
    (a few characters can claim billions of pixels)."""
    if isinstance(instance, dict):
        from .data.masks import decode_rle  # the data package only when labels are built (training)

        rle = instance.get("segmentation", instance)
        return torch.from_numpy(decode_rle(rle, size, "instance"))
    if isinstance(instance, np.ndarray | torch.Tensor):
        mask = torch.as_tensor(np.asarray(instance) if isinstance(instance, np.ndarray) else instance)
        if mask.ndim != 2:
            raise ValueError(f"an instance mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
        return mask.cpu() > 0.5 if torch.is_floating_point(mask) else mask.cpu().bool()
    raise ValueError(
        f"an instance must be a dict with a COCO RLE 'segmentation', an RLE dict or an (H, W) mask, "
        f"got {type(instance).__name__}"
    )


class ReferringSegmentationImageProcessorBase(ReferringSegmentationPostProcessor, BaseImageProcessor):
    r"""Resize to a fixed size, rescale to [0, 1] and normalise; optionally build ``mask_labels``.

    Args:
        do_resize: resize every image to ``size``.
        size: ``{"height": h, "width": w}`` (or an int for a square); 480 x 480 by default.
        do_rescale: map pixel values to [0, 1] by their real range (``refseg.image_utils.to_chw_float``:
            8-bit times ``rescale_factor``, 16-bit over 65535, floats in [0, 1] as they are).
        rescale_factor: scale applied to 8-bit pixels (positive).
        do_normalize: subtract ``image_mean`` and divide by ``image_std`` per channel.
        image_mean, image_std: per-channel statistics (ImageNet by default, as for Swin); three
            finite values each, no zero std.

    Raises:
        ValueError: for a size <= 0, a zero or non-finite std, statistics of the wrong length, or a
            non-positive ``rescale_factor``.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = self._size_dict(size if size is not None else 480)
        self.do_rescale = do_rescale
        self.rescale_factor = self._check_rescale_factor(rescale_factor)
        self.do_normalize = do_normalize
        self.image_mean, self.image_std = check_image_statistics(
            image_mean if image_mean is not None else IMAGENET_DEFAULT_MEAN,
            image_std if image_std is not None else IMAGENET_DEFAULT_STD,
        )

    @staticmethod
    def _size_dict(size: dict[str, int] | int | Sequence[int]) -> dict[str, int]:
        if isinstance(size, int) and not isinstance(size, bool):
            out = {"height": size, "width": size}
        elif isinstance(size, dict) and {"height", "width"} <= set(size):
            out = {"height": size["height"], "width": size["width"]}
        elif isinstance(size, list | tuple) and len(size) == 2:
            out = {"height": size[0], "width": size[1]}
        else:
            raise ValueError(f"size must be an int, (height, width) or {{'height', 'width'}}, got {size!r}")
        for key, value in out.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ValueError(f"size {key} must be a whole number of pixels, got {value!r}")
        return check_positive_size({k: int(v) for k, v in out.items()})

    @staticmethod
    def _check_rescale_factor(rescale_factor: Any) -> float:
        if isinstance(rescale_factor, bool) or not isinstance(rescale_factor, int | float):
            raise ValueError(f"rescale_factor must be a positive number, got {rescale_factor!r}")
        if not math.isfinite(rescale_factor) or rescale_factor <= 0:
            raise ValueError(f"rescale_factor must be a positive finite number, got {rescale_factor}")
        return float(rescale_factor)

    def to_dict(self) -> dict[str, Any]:
        """The saved ``preprocessor_config.json`` content (without transformers' private bookkeeping keys)."""
        out = super().to_dict()
        for key in ("_valid_kwargs_names", "_valid_processor_keys"):
            out.pop(key, None)
        return out

    @staticmethod
    def make_list_of_images(images: Any) -> list[Any]:
        """One image (PIL, 2/3-D array or tensor) or a batch (list, 4-D array/tensor) -> list of images.

        Each image is checked before any pixel is read (``refseg.image_utils.check_image_input``): the pixel
        cap (``refseg.image_utils.max_image_pixels``), and the format allow-list for a PIL image opened lazily.
        """
        image_list = make_list_of_images(images)
        for k, image in enumerate(image_list):
            check_image_input(image, f"image {k}")
        return image_list

    @staticmethod
    def image_size(image: Any) -> tuple[int, int]:
        """(height, width) of one input image in its own layout."""
        return image_size(image)

    def content_size(self, height: int, width: int, size: dict[str, int] | None = None) -> tuple[int, int]:
        """Size of the image part of the ``size`` canvas for an original image of ``(height, width)``.

        The square resize stretches every image over the whole canvas.
        """
        size = self.size if size is None else self._size_dict(size)
        return size["height"], size["width"]

    def _resolve_arguments(
        self,
        kwargs: dict[str, Any],
        return_tensors: str | None,
        do_resize: bool | None,
        size: dict[str, int] | int | None,
        do_rescale: bool | None,
        rescale_factor: float | None,
        do_normalize: bool | None,
        image_mean: Sequence[float] | None,
        image_std: Sequence[float] | None,
    ) -> dict[str, Any]:
        """Per-call overrides merged with the processor's settings, validated once."""
        if kwargs:
            raise ValueError(f"unexpected arguments for {type(self).__name__}: {sorted(kwargs)}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        mean, std = check_image_statistics(
            self.image_mean if image_mean is None else image_mean,
            self.image_std if image_std is None else image_std,
        )
        return {
            "do_resize": self.do_resize if do_resize is None else do_resize,
            "size": self._size_dict(self.size if size is None else size),
            "do_rescale": self.do_rescale if do_rescale is None else do_rescale,
            "rescale_factor": self._check_rescale_factor(
                self.rescale_factor if rescale_factor is None else rescale_factor
            ),
            "do_normalize": self.do_normalize if do_normalize is None else do_normalize,
            "mean": torch.tensor(mean, dtype=torch.float32),
            "std": torch.tensor(std, dtype=torch.float32),
        }

    @staticmethod
    def _pixels(image: Any, resize_to: tuple[int, int] | None, args: dict[str, Any]) -> torch.Tensor:
        """One image -> (3, h, w) float32: rescaled, resized (bilinear, antialiased) to ``resize_to``, normalised."""
        # one channel at a time: no full-size float copy of the whole image (large photos, docs/pipeline.md)
        tensor = resize_to_chw_float(
            image, resize_to or image_size(image), args["rescale_factor"], args["do_rescale"]
        )
        if args["do_normalize"]:
            tensor = (tensor - args["mean"][:, None, None]) / args["std"][:, None, None]
        return tensor

    def _batch_pixels(
        self, pixels: list[torch.Tensor], size: dict[str, int] | None
    ) -> tuple[dict[str, Any], tuple[int, int], list[tuple[int, int]]]:
        """Per-image (3, h, w) tensors -> (model inputs, canvas size, per-image content sizes).

        The square resize stacks them; without ``do_resize`` (``size`` is ``None``) they must already agree.
        """
        shapes = {tuple(p.shape) for p in pixels}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(shapes)} and do_resize=False; they cannot be batched"
            )
        canvas = tuple(pixels[0].shape[1:]) if pixels else (0, 0)
        return {"pixel_values": torch.stack(pixels)}, canvas, [canvas] * len(pixels)

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
        """Return ``pixel_values`` (B, 3, H, W) float32 (and what :meth:`_batch_pixels` adds, e.g. a ``pixel_mask``)
        and, with ``instances``, ``mask_labels`` on the same canvas.

        ``instances[b]`` lists the referred instances of sample ``b`` (dataset instance dicts with a
        COCO RLE ``segmentation``, bare RLE dicts, or (H, W) masks at the image's original size); an
        empty list is a no-target sample.
        """
        args = self._resolve_arguments(
            kwargs,
            return_tensors,
            do_resize,
            size,
            do_rescale,
            rescale_factor,
            do_normalize,
            image_mean,
            image_std,
        )
        size = args["size"]
        image_list = self.make_list_of_images(images)
        original_sizes = [self.image_size(image) for image in image_list]
        pixels = [
            self._pixels(image, self.content_size(h, w, size) if args["do_resize"] else None, args)
            for image, (h, w) in zip(image_list, original_sizes)
        ]
        data, canvas, contents = self._batch_pixels(pixels, size if args["do_resize"] else None)
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
        """Per sample, a float {0, 1} tensor (n_b, H, W) of its instance masks on the ``target_size`` canvas.

        Each mask is resized (nearest) to the image part of the canvas (``content_sizes``, default
        :meth:`content_size` of each original size: the whole canvas for the square resize) and zero-padded.
        """
        if isinstance(instances, dict) or not isinstance(instances, list | tuple):
            raise ValueError("instances must be a list with one list of instances per image")
        if len(instances) != len(original_sizes):
            raise ValueError(f"got {len(original_sizes)} images but {len(instances)} instance lists")
        target_size = tuple(target_size)
        if content_sizes is None:
            canvas = {"height": target_size[0], "width": target_size[1]}
            content_sizes = [self.content_size(h, w, canvas) for h, w in original_sizes]
        labels = []
        for b, (sample, (h, w), content) in enumerate(zip(instances, original_sizes, content_sizes)):
            sample = [] if sample is None else sample
            if isinstance(sample, dict) or not isinstance(sample, list | tuple):
                raise ValueError(f"instances[{b}] must be a list of instances, got {type(sample).__name__}")
            masks = [instance_to_mask(inst, (h, w)) for inst in sample]
            for k, mask in enumerate(masks):
                if tuple(mask.shape) != (h, w):
                    raise ValueError(
                        f"instance {k} of sample {b} has a mask of size {tuple(mask.shape)} but the image is {(h, w)}"
                    )
            canvas_labels = torch.zeros((len(masks), *target_size), dtype=torch.float32)
            if masks:
                stacked = torch.stack(masks).to(torch.float32)
                if tuple(stacked.shape[1:]) != tuple(content):
                    stacked = F.interpolate(stacked[None], size=tuple(content), mode="nearest")[0]
                canvas_labels[:, : content[0], : content[1]] = stacked
            labels.append(canvas_labels)
        return labels
