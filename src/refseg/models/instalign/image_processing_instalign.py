"""Image processor for InstAlign: the paper's square resize, rescale and ImageNet normalisation.

InstAlign (paper Sec. 4.1, "Implementation details") resizes every image to 480 x 480 and
normalises with the ImageNet statistics of its Swin backbone. This processor works on PIL images,
numpy arrays and torch tensors with torch only (no torchvision), so every image of a batch ends up
with the same size and batches stack without padding. Pixel types (8-bit, 16-bit, float) are
mapped to [0, 1] by ``refseg.image_utils.to_chw_float``, shared by every refseg image processor.

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

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ...image_utils import image_size, make_list_of_images, to_chw_float
from ...validation import (
    check_finite_logits,
    check_image_statistics,
    check_positive_size,
    check_probability,
)

__all__ = ["InstAlignImageProcessor", "masks_to_boxes"]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes ``[x0, y0, x1, y1]`` in pixels (x1, y1 exclusive) of bool masks (N, H, W); zeros when empty."""
    if masks.ndim != 3:
        raise ValueError(f"masks_to_boxes expects (N, H, W) masks, got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    boxes = torch.zeros((n, 4), dtype=torch.float32)
    if n == 0:
        return boxes
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    ar_h = torch.arange(h)
    ar_w = torch.arange(w)
    nonempty = rows.any(dim=1)
    y0 = torch.where(rows, ar_h, h).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    x0 = torch.where(cols, ar_w, w).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    stacked = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    boxes[nonempty] = stacked[nonempty]
    return boxes


def _output_field(outputs: Any, name: str) -> torch.Tensor:
    value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
    if value is None:
        raise ValueError(f"the model outputs have no '{name}'; post_process_referring_segmentation needs it")
    return value


def _instance_to_mask(instance: Any) -> torch.Tensor:
    """A dataset instance dict (``segmentation`` RLE), a bare RLE dict or an (H, W) array -> bool mask."""
    if isinstance(instance, dict):
        from ...data.masks import decode_rle  # pycocotools only when labels are built (training)

        rle = instance.get("segmentation", instance)
        return torch.from_numpy(decode_rle(rle))
    if isinstance(instance, np.ndarray | torch.Tensor):
        mask = torch.as_tensor(np.asarray(instance) if isinstance(instance, np.ndarray) else instance)
        if mask.ndim != 2:
            raise ValueError(f"an instance mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
        return mask.cpu() > 0.5 if torch.is_floating_point(mask) else mask.cpu().bool()
    raise ValueError(
        f"an instance must be a dict with a COCO RLE 'segmentation', an RLE dict or an (H, W) mask, "
        f"got {type(instance).__name__}"
    )


class InstAlignImageProcessor(BaseImageProcessor):
    r"""Resize to a fixed size, rescale to [0, 1] and normalise; optionally build ``mask_labels``.

    Args:
        do_resize: resize every image to ``size``.
        size: ``{"height": h, "width": w}`` (or an int for a square); the paper uses 480 x 480.
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
        out = super().to_dict()
        for key in ("_valid_kwargs_names", "_valid_processor_keys"):
            out.pop(key, None)
        return out

    @staticmethod
    def make_list_of_images(images: Any) -> list[Any]:
        """One image (PIL, 2/3-D array or tensor) or a batch (list, 4-D array/tensor) -> list of images."""
        return make_list_of_images(images)

    @staticmethod
    def image_size(image: Any) -> tuple[int, int]:
        """(height, width) of one input image in its own layout."""
        return image_size(image)

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
        """Return ``pixel_values`` (B, 3, H, W) float32 and, with ``instances``, ``mask_labels``.

        ``instances[b]`` lists the referred instances of sample ``b`` (dataset instance dicts with a
        COCO RLE ``segmentation``, bare RLE dicts, or (H, W) masks at the image's original size); an
        empty list is a no-target sample.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments for InstAlignImageProcessor: {sorted(kwargs)}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self._size_dict(self.size if size is None else size)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self._check_rescale_factor(
            self.rescale_factor if rescale_factor is None else rescale_factor
        )
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean, std = check_image_statistics(
            self.image_mean if image_mean is None else image_mean,
            self.image_std if image_std is None else image_std,
        )
        mean = torch.tensor(mean, dtype=torch.float32)
        std = torch.tensor(std, dtype=torch.float32)

        image_list = self.make_list_of_images(images)
        original_sizes = [self.image_size(image) for image in image_list]
        pixels = []
        for image in image_list:
            tensor = to_chw_float(image, rescale_factor, do_rescale)
            if do_resize and tuple(tensor.shape[1:]) != (size["height"], size["width"]):
                tensor = F.interpolate(
                    tensor[None],
                    size=(size["height"], size["width"]),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0]
            if do_normalize:
                tensor = (tensor - mean[:, None, None]) / std[:, None, None]
            pixels.append(tensor)
        shapes = {tuple(p.shape) for p in pixels}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(shapes)} and do_resize=False; they cannot be batched"
            )
        data: dict[str, Any] = {"pixel_values": torch.stack(pixels)}
        if instances is not None:
            data["mask_labels"] = self.prepare_mask_labels(
                instances, original_sizes, tuple(pixels[0].shape[1:]) if pixels else (0, 0)
            )
        return BatchFeature(data=data, tensor_type=None)

    def prepare_mask_labels(
        self,
        instances: Sequence[Sequence[Any]],
        original_sizes: Sequence[tuple[int, int]],
        target_size: tuple[int, int],
    ) -> list[torch.Tensor]:
        """Per sample, a float {0, 1} tensor (n_b, H, W) of its instance masks resized with nearest."""
        if isinstance(instances, dict) or not isinstance(instances, list | tuple):
            raise ValueError("instances must be a list with one list of instances per image")
        if len(instances) != len(original_sizes):
            raise ValueError(f"got {len(original_sizes)} images but {len(instances)} instance lists")
        labels = []
        for b, (sample, (h, w)) in enumerate(zip(instances, original_sizes)):
            if sample is None:
                sample = []
            if isinstance(sample, dict) or not isinstance(sample, list | tuple):
                raise ValueError(f"instances[{b}] must be a list of instances, got {type(sample).__name__}")
            masks = [_instance_to_mask(inst) for inst in sample]
            for k, mask in enumerate(masks):
                if tuple(mask.shape) != (h, w):
                    raise ValueError(
                        f"instance {k} of sample {b} has a mask of size {tuple(mask.shape)} but the image is {(h, w)}"
                    )
            if not masks:
                labels.append(torch.zeros((0, *target_size), dtype=torch.float32))
                continue
            stacked = torch.stack(masks).to(torch.float32)
            if tuple(stacked.shape[1:]) != tuple(target_size):
                stacked = F.interpolate(stacked[None], size=target_size, mode="nearest")[0]
            labels.append(stacked)
        return labels

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample (``docs/pipeline.md``).

        Args:
            outputs: an ``InstAlignOutput`` (or a dict) with ``pred_masks`` (B, N, h, w),
                ``pred_scores`` (B, N), ``semantic_mask_logits`` (B, h, w) and ``no_target_logits`` (B,).
            target_sizes: per sample ``(height, width)`` of the original image; ``None`` keeps the
                model input size.
            threshold: an instance query is kept when ``sigmoid(pred_scores) > threshold``.
            mask_threshold: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
            no_target_threshold: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.
                The three thresholds must be finite numbers in [0, 1].

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float,
            "instances": [{"mask": bool (H, W), "box": float [x0, y0, x1, y1], "score": float}]}]``.
            Logits are upsampled bilinearly to the model input size, then to the target size. The
            union mask is all False and ``instances`` is empty when the sample is judged no-target;
            instances are sorted by decreasing score and empty instance masks are dropped.
            ``"semantic_mask"`` is the thresholded merged mask *before* the no-target decision: ReLA's
            evaluator counts it in the union of a target sample wrongly judged no-target
            (``docs/metrics.md``), so metrics should be computed from it.
            Instance masks are upsampled one at a time, so memory stays O(image size) at any threshold.

        Raises:
            ValueError: a threshold outside [0, 1], NaN model outputs, or mismatched batch sizes.
        """
        threshold = check_probability(threshold, "threshold")
        mask_threshold = check_probability(mask_threshold, "mask_threshold")
        no_target_threshold = check_probability(no_target_threshold, "no_target_threshold")
        pred_masks = _output_field(outputs, "pred_masks").detach().float().cpu()
        pred_scores = _output_field(outputs, "pred_scores").detach().float().cpu()
        semantic = _output_field(outputs, "semantic_mask_logits").detach().float().cpu()
        no_target_logits = _output_field(outputs, "no_target_logits").detach().float().cpu().reshape(-1)
        for name, value in (
            ("no-target logits", no_target_logits),
            ("instance scores", pred_scores),
            ("semantic mask logits", semantic),
            ("instance mask logits", pred_masks),
        ):
            check_finite_logits(value, name)
        batch = pred_masks.shape[0]
        if pred_scores.shape[0] != batch or semantic.shape[0] != batch or no_target_logits.shape[0] != batch:
            raise ValueError("the model outputs disagree on the batch size")
        input_size = (self.size["height"], self.size["width"])
        if target_sizes is None:
            target_sizes = [input_size] * batch
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if len(target_sizes) != batch:
            raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {batch}")

        results = []
        for b in range(batch):
            size = (int(target_sizes[b][0]), int(target_sizes[b][1]))
            if size[0] <= 0 or size[1] <= 0:
                raise ValueError(f"target size {size} of sample {b} must be positive")
            no_target_prob = float(torch.sigmoid(no_target_logits[b]))
            no_target = no_target_prob > no_target_threshold
            semantic_mask = self._binary_mask(semantic[b], input_size, size, mask_threshold)
            union = semantic_mask
            instances: list[dict[str, Any]] = []
            if no_target:
                union = torch.zeros(size, dtype=torch.bool)
            else:
                scores = pred_scores[b].sigmoid()
                keep = torch.nonzero(scores > threshold).flatten()
                keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
                for q in keep.tolist():  # one full-size float mask at a time: memory O(image size)
                    mask = self._binary_mask(pred_masks[b, q], input_size, size, mask_threshold)
                    if mask.any():
                        box = masks_to_boxes(mask[None])[0]
                        instances.append({"mask": mask, "box": box, "score": float(scores[q])})
            results.append(
                {
                    "mask": union,
                    "no_target": bool(no_target),
                    "target_score": 1.0 - no_target_prob,
                    "instances": instances,
                    "semantic_mask": semantic_mask,
                }
            )
        return results

    @staticmethod
    def _binary_mask(
        logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int], mask_threshold: float
    ) -> torch.Tensor:
        """(h, w) logits -> bilinear to the model input size -> bilinear to ``size`` -> bool ``sigmoid > t``.

        Works on one mask at a time and in place, so the peak is one float mask of ``size`` plus its bool.
        """
        x = logits[None, None]
        if tuple(x.shape[-2:]) != tuple(input_size):
            x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        else:
            x = x.clone()
        return x.sigmoid_()[0, 0] > mask_threshold
