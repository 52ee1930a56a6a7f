"""Image processor for InstAlign: the paper's square resize, rescale and ImageNet normalisation.

InstAlign (papers/instalign.md, section 4.1 "Implementation details") resizes every image to
480 x 480 and normalises with the ImageNet statistics of its Swin backbone. This processor
works on PIL images, numpy arrays and torch tensors with torch only (no torchvision), so every
image of a batch ends up with the same size and batches stack without padding.

For training it also turns each sample's list of referred instances (the dataset rows' COCO RLE
masks) into ``mask_labels``: one float {0, 1} tensor ``(n_b, H, W)`` per sample at the model
input resolution (nearest-neighbour resize), the layout ``InstAlignForReferringSegmentation``
expects; ``n_b = 0`` encodes a no-target sample.

``post_process_referring_segmentation`` turns model outputs into the per-sample dicts of DESIGN.md
("Processor"): the union mask of the referred objects at the original image size (from the Adaptive
Instance Aggregation logits, eq. 8), the no-target decision (eq. 10-12) and the selected instances
with their boxes; ``InstAlignProcessor`` forwards to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

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


def _is_single_image(image: Any) -> bool:
    if isinstance(image, PIL.Image.Image):
        return True
    if isinstance(image, np.ndarray | torch.Tensor):
        return image.ndim in (2, 3)
    return False


def _to_chw_float(image: Any, rescale_factor: float, do_rescale: bool) -> torch.Tensor:
    """One image -> float32 (3, H, W) tensor with values in [0, 1] (when ``do_rescale``).

    PIL images are converted to RGB. Numpy arrays are (H, W, C) or (H, W); torch tensors are
    (C, H, W) or (H, W). Integer inputs are multiplied by ``rescale_factor``; floating inputs are
    taken as already in [0, 1]. One channel is repeated to three, an alpha channel is dropped.
    """
    if isinstance(image, PIL.Image.Image):
        tensor = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
    elif isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError(f"a numpy image must be (H, W, C) or (H, W), got shape {image.shape}")
        if image.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"a numpy image must be channels-last (H, W, C) with C in (1, 3, 4), got shape {image.shape}"
            )
        if image.dtype == bool:
            image = image.astype(np.uint8)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim != 3:
            raise ValueError(f"a torch image must be (C, H, W) or (H, W), got shape {tuple(image.shape)}")
        if tensor.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"a torch image must be channels-first (C, H, W) with C in (1, 3, 4), got shape {tuple(image.shape)}"
            )
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8)
    else:
        raise ValueError(
            f"unsupported image type {type(image).__name__}; pass a PIL image, a numpy array or a torch tensor"
        )
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"image has an empty spatial size {tuple(tensor.shape[1:])}")
    is_integer = not torch.is_floating_point(tensor)
    tensor = tensor.to(torch.float32)
    if is_integer and do_rescale:
        tensor = tensor * rescale_factor
    return tensor


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
        do_rescale: multiply integer pixel values by ``rescale_factor`` (floating inputs are taken as
            already in [0, 1]).
        rescale_factor: scale applied to integer pixels.
        do_normalize: subtract ``image_mean`` and divide by ``image_std`` per channel.
        image_mean, image_std: per-channel statistics (ImageNet by default, as for Swin).
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
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean if image_mean is not None else IMAGENET_DEFAULT_MEAN)
        self.image_std = list(image_std if image_std is not None else IMAGENET_DEFAULT_STD)

    @staticmethod
    def _size_dict(size: dict[str, int] | int | Sequence[int]) -> dict[str, int]:
        if isinstance(size, int):
            return {"height": size, "width": size}
        if isinstance(size, dict) and {"height", "width"} <= set(size):
            return {"height": int(size["height"]), "width": int(size["width"])}
        if isinstance(size, list | tuple) and len(size) == 2:
            return {"height": int(size[0]), "width": int(size[1])}
        raise ValueError(f"size must be an int, (height, width) or {{'height', 'width'}}, got {size!r}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("_valid_kwargs_names", "_valid_processor_keys"):
            out.pop(key, None)
        return out

    @staticmethod
    def make_list_of_images(images: Any) -> list[Any]:
        """One image (PIL, 2/3-D array or tensor) or a batch (list, 4-D array/tensor) -> list of images."""
        if _is_single_image(images):
            return [images]
        if isinstance(images, np.ndarray | torch.Tensor):
            if images.ndim == 4:
                return list(images)
            raise ValueError(
                f"expected an image or a batch of images, got an array of shape {tuple(images.shape)}"
            )
        if isinstance(images, list | tuple):
            if len(images) == 0:
                raise ValueError("got an empty list of images")
            for i, image in enumerate(images):
                if not _is_single_image(image):
                    shape = getattr(image, "shape", None)
                    raise ValueError(
                        f"image {i} is not a PIL image, an (H, W, C) numpy array or a (C, H, W) tensor "
                        f"(got {type(image).__name__}{'' if shape is None else f' of shape {tuple(shape)}'})"
                    )
            return list(images)
        raise ValueError(
            f"unsupported images of type {type(images).__name__}; pass a PIL image, a numpy array, "
            "a torch tensor or a list of them"
        )

    @staticmethod
    def image_size(image: Any) -> tuple[int, int]:
        """(height, width) of one input image in its own layout."""
        if isinstance(image, PIL.Image.Image):
            return image.height, image.width
        if isinstance(image, np.ndarray):
            return int(image.shape[0]), int(image.shape[1])
        return int(image.shape[-2]), int(image.shape[-1])

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
        size = self.size if size is None else self._size_dict(size)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = torch.tensor(self.image_mean if image_mean is None else image_mean, dtype=torch.float32)
        std = torch.tensor(self.image_std if image_std is None else image_std, dtype=torch.float32)

        image_list = self.make_list_of_images(images)
        original_sizes = [self.image_size(image) for image in image_list]
        pixels = []
        for image in image_list:
            tensor = _to_chw_float(image, rescale_factor, do_rescale)
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
        """Model outputs -> one dict per sample (DESIGN.md, "Processor").

        Args:
            outputs: an ``InstAlignOutput`` (or a dict) with ``pred_masks`` (B, N, h, w),
                ``pred_scores`` (B, N), ``semantic_mask_logits`` (B, h, w) and ``no_target_logits`` (B,).
            target_sizes: per sample ``(height, width)`` of the original image; ``None`` keeps the
                model input size.
            threshold: an instance query is kept when ``sigmoid(pred_scores) > threshold``.
            mask_threshold: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
            no_target_threshold: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float,
            "instances": [{"mask": bool (H, W), "box": float [x0, y0, x1, y1], "score": float}]}]``.
            Logits are upsampled bilinearly to the model input size, then to the target size. The
            union mask is all False and ``instances`` is empty when the sample is judged no-target;
            instances are sorted by decreasing score and empty instance masks are dropped.
            ``"semantic_mask"`` is the thresholded merged mask *before* the no-target decision: ReLA's
            evaluator counts it in the union of a target sample wrongly judged no-target
            (notes/originals.md 2.1), so metrics should be computed from it.
        """
        pred_masks = _output_field(outputs, "pred_masks").detach().float().cpu()
        pred_scores = _output_field(outputs, "pred_scores").detach().float().cpu()
        semantic = _output_field(outputs, "semantic_mask_logits").detach().float().cpu()
        no_target_logits = _output_field(outputs, "no_target_logits").detach().float().cpu().reshape(-1)
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
            no_target_prob = float(torch.sigmoid(no_target_logits[b]))
            no_target = no_target_prob > no_target_threshold
            semantic_mask = self._upsample(semantic[b][None], input_size, size)[0].sigmoid() > mask_threshold
            union = semantic_mask
            instances: list[dict[str, Any]] = []
            if no_target:
                union = torch.zeros(size, dtype=torch.bool)
            else:
                scores = pred_scores[b].sigmoid()
                keep = torch.nonzero(scores > threshold).flatten()
                keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
                if len(keep):
                    masks = self._upsample(pred_masks[b, keep], input_size, size).sigmoid() > mask_threshold
                    boxes = masks_to_boxes(masks)
                    for i, q in enumerate(keep.tolist()):
                        if masks[i].any():
                            instances.append({"mask": masks[i], "box": boxes[i], "score": float(scores[q])})
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
    def _upsample(logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """(N, h, w) logits -> bilinear to the model input size -> bilinear to ``size``."""
        x = logits[None]
        if tuple(x.shape[-2:]) != tuple(input_size):
            x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x[0]
