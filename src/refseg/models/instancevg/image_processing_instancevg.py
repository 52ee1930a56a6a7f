"""Image processor for InstanceVG: the released pre-processing (paper Sec. 4.3) and post-processing
(Sec. 3.5, Fig. 5).

Pre-processing (the released test pipeline, paper Sec. 4.3): the decoded 8-bit image (16-bit files reduced to
their high byte, grey images repeated on three channels, alpha dropped, as OpenCV's colour decoder does) is
resized to 320 x 320 without keeping the aspect ratio with OpenCV's bilinear ``INTER_LINEAR`` on uint8 values
(``resample_backend="opencv"``, the default: identical to the original), then normalised with ImageNet mean /
std. No padding. ``resample_backend="torch"`` needs no OpenCV: ``torch`` bilinear interpolation without
antialiasing, rounded back to grey levels, stays within one grey level of OpenCV (``docs/models/instancevg.md``,
"Pre-processing"). Training targets: instance masks resized with nearest neighbour, boxes from the dataset's
``bbox`` (clipped to the image, normalised ``(cx, cy, w, h)``).

Post-processing: query score ``p_obj * sigmoid(target logit)`` (``score_weighted``), queries with a score above
``thr_q`` are kept, masks are binarised at ``thr_m`` at the model resolution, and the output mask is the OR of
the global mask and the kept instance masks (``mask_merge``); binary masks are resized to the original image
with nearest neighbour and boxes scaled back. A sample with no kept query is judged no-target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature

from ...boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, masks_to_boxes
from ...image_processing_utils import ReferringSegmentationImageProcessorBase
from ...modeling.instance_nms import suppress_duplicate_instances
from ...modeling.outputs import ReferringSegmentationOutput
from .modeling_instancevg import InstanceVGOutput
from .resize_instancevg import RESAMPLE_BACKENDS, resized_values

__all__ = ["InstanceVGImageProcessor"]

MASK_MERGE = ("merge", "global", "instance")


class InstanceVGImageProcessor(ReferringSegmentationImageProcessorBase):
    r"""Resize (bilinear, no antialiasing), normalise; ``mask_labels`` / ``box_labels``; post-processing.

    Args:
        size: ``{"height", "width"}`` or an int (320 for the released models).
        image_mean, image_std: ImageNet statistics (the original's ``[123.675, 116.28, 103.53]`` /
            ``[58.395, 57.12, 57.375]`` on 0-255 values).
        score_threshold: default ``thr_q`` of post-processing (0.7 as the released configs).
        mask_threshold: default ``thr_m`` (0.5).
        score_weighted: weight query scores by the target probability of the no-target head.
        mask_merge: ``"merge"`` (global OR kept instances), ``"global"`` or ``"instance"``.
        resample_backend: ``"opencv"`` (default; the original's ``cv2.resize(INTER_LINEAR)`` on uint8, needs
            ``opencv-python-headless``: ``pip install 'refseg[opencv]'``) or ``"torch"`` (no OpenCV, within one
            grey level of it).
        Other arguments as :class:`~refseg.image_processing_utils.ReferringSegmentationImageProcessorBase`.
    """

    def __init__(
        self,
        size: dict[str, int] | int | None = None,
        score_threshold: float = 0.7,
        mask_threshold: float = 0.5,
        score_weighted: bool = True,
        mask_merge: str = "merge",
        resample_backend: str = "opencv",
        **kwargs,
    ) -> None:
        super().__init__(size=size if size is not None else 320, **kwargs)
        if mask_merge not in MASK_MERGE:
            raise ValueError(f"mask_merge must be one of {MASK_MERGE}, got {mask_merge!r}")
        self.score_threshold = float(score_threshold)
        self.mask_threshold = float(mask_threshold)
        self.score_weighted = bool(score_weighted)
        self.mask_merge = mask_merge
        if resample_backend not in RESAMPLE_BACKENDS:
            raise ValueError(f"resample_backend must be one of {RESAMPLE_BACKENDS}, got {resample_backend!r}")
        self.resample_backend = resample_backend

    def preprocess(
        self,
        images: Any,
        instances: Sequence[Sequence[Any]] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Return ``pixel_values`` (B, 3, H, W) float32 and, with ``instances``, ``mask_labels`` and
        ``box_labels`` (when every instance dict has a ``bbox`` ``[x, y, w, h]`` in original pixels; otherwise
        the model derives the boxes from the masks).

        ``instances[b]`` lists the referred instances of sample ``b`` (dataset instance dicts with a COCO RLE
        ``segmentation``, bare RLE dicts, or (H, W) masks at the original size); an empty list is a no-target sample.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments for InstanceVGImageProcessor: {sorted(kwargs)}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        size = (self.size["height"], self.size["width"])
        mean = torch.tensor(self.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.image_std, dtype=torch.float32)[:, None, None]
        image_list = self.make_list_of_images(images)
        original_sizes = [self.image_size(image) for image in image_list]
        pixels = []
        for image in image_list:
            # 0-255 for integer images
            tensor, is_integer = resized_values(
                image, size if self.do_resize else None, self.resample_backend
            )
            if is_integer and self.do_rescale:
                tensor = tensor * self.rescale_factor
            if self.do_normalize:
                tensor = (tensor - mean) / std
            pixels.append(tensor)
        shapes = {tuple(p.shape) for p in pixels}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(shapes)} and do_resize=False; they cannot be batched"
            )
        data: dict[str, Any] = {"pixel_values": torch.stack(pixels)}
        if instances is not None:
            target = tuple(pixels[0].shape[1:])
            data["mask_labels"] = self.prepare_mask_labels(instances, original_sizes, target)
            boxes = self.prepare_box_labels(instances, original_sizes)
            if boxes is not None:
                data["box_labels"] = boxes
        return BatchFeature(data=data, tensor_type=None)

    @staticmethod
    def prepare_box_labels(
        instances: Sequence[Sequence[Any]], original_sizes: Sequence[tuple[int, int]]
    ) -> list[torch.Tensor] | None:
        """Normalised ``(cx, cy, w, h)`` per sample from the instances' ``bbox`` ``[x, y, w, h]`` (pixels).

        As the original: ``[x, y, x + w, y + h]`` clipped to ``[0, W - 1]`` / ``[0, H - 1]``, divided by
        ``(W, H)``. ``None`` when some instance has no ``bbox``.
        """
        labels = []
        for sample, (height, width) in zip(instances, original_sizes):
            sample = sample or []
            if not all(isinstance(inst, dict) and inst.get("bbox") is not None for inst in sample):
                return None
            boxes = torch.tensor([list(inst["bbox"]) for inst in sample], dtype=torch.float32).reshape(-1, 4)
            xyxy = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
            limit = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=torch.float32)
            xyxy = torch.minimum(xyxy.clamp(min=0), limit)
            xyxy = xyxy / torch.tensor([width, height, width, height], dtype=torch.float32)
            labels.append(box_xyxy_to_cxcywh(xyxy))
        return labels

    output_class = InstanceVGOutput
    required_output_fields = ("pred_masks", "semantic_mask_logits")
    # the two-way class logits when present, else the contract's pred_scores / no_target_logits (_probabilities)
    optional_output_fields = (
        "pred_boxes",
        "pred_class_logits",
        "no_target_class_logits",
        "pred_scores",
        "no_target_logits",
    )

    def _default_thresholds(self) -> dict[str, float | None]:
        """``threshold`` and ``mask_threshold`` default to the processor's ``score_threshold`` (``thr_q``, 0.7)
        and ``mask_threshold`` (``thr_m``, 0.5)."""
        defaults = super()._default_thresholds()
        defaults.update(threshold=self.score_threshold, mask_threshold=self.mask_threshold)
        return defaults

    def _post_process(
        self,
        outputs: InstanceVGOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
        score_weighted: bool | None = None,
        mask_merge: str | None = None,
    ) -> list[dict[str, Any]]:
        """InstanceVG's part of ``post_process_referring_segmentation`` (Sec. 3.5, Fig. 5).

        Reads ``pred_masks`` (B, N, S, S), ``semantic_mask_logits`` (B, S, S), ``pred_boxes`` (B, N, 4) and the
        two-way ``pred_class_logits`` (B, N, 2) / ``no_target_class_logits`` (B, 2) of an ``InstanceVGOutput``;
        ``pred_scores`` / ``no_target_logits`` are used when those two are missing, and boxes are derived from
        the binary instance masks when ``pred_boxes`` is.

        - ``threshold``: ``thr_q`` (default: the processor's ``score_threshold``, 0.7); a query is kept when its
          score is strictly above it.
        - ``mask_threshold``: ``thr_m`` (default 0.5); a pixel is foreground when its probability is ``>=`` it.
        - ``no_target_threshold``: accepted for the common pipeline interface and not used: InstanceVG judges a
          sample no-target when no query is kept.
        - ``score_weighted``, ``mask_merge``: override the processor's settings.
        - ``instance_nms_threshold``: mask NMS of the ``instances`` list (:mod:`refseg.modeling.instance_nms`);
          off by default (``None``), as the released models are evaluated: the paper's point-guided matching
          keeps queries apart and NMS did not help its masks (Table 15, ``docs/models/instancevg.md``). It
          filters ``instances`` only; ``mask``, ``semantic_mask``, ``boxes`` and ``scores`` do not change.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask", "box",
            "score"}], "semantic_mask": bool (H, W), "boxes": (N, 4), "scores": (N,)}]``. ``target_score`` is
            the highest query score; ``mask`` is empty when the sample is judged no-target, ``semantic_mask`` is
            the merged mask before that decision (what the GRES evaluators score). ``boxes`` / ``scores`` hold
            every query (pixels ``[x0, y0, x1, y1]`` of the original image) for GREC evaluation, which keeps
            scores ``>= 0.7``. Instances are the kept queries sorted by score, without zero-area boxes.
        """
        del no_target_threshold
        score_weighted = self.score_weighted if score_weighted is None else bool(score_weighted)
        mask_merge = self.mask_merge if mask_merge is None else mask_merge
        if mask_merge not in MASK_MERGE:
            raise ValueError(f"mask_merge must be one of {MASK_MERGE}, got {mask_merge!r}")
        pred_masks, pred_boxes, semantic = (
            outputs.pred_masks,
            outputs.pred_boxes,
            outputs.semantic_mask_logits,
        )
        object_prob, target_prob = _probabilities(outputs)
        input_size = (self.size["height"], self.size["width"])

        results = []
        for b, (height, width) in enumerate(target_sizes):
            scores = object_prob[b] * target_prob[b] if score_weighted else object_prob[b]
            keep = torch.nonzero(scores > threshold).flatten()
            keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
            instance_masks = _to_size(pred_masks[b].sigmoid() >= mask_threshold, input_size)
            global_mask = _to_size(semantic[b][None].sigmoid() >= mask_threshold, input_size)[0]
            merged = torch.zeros(input_size, dtype=torch.bool)
            if mask_merge in ("merge", "global"):
                merged |= global_mask
            if mask_merge in ("merge", "instance") and len(keep):
                merged |= instance_masks[keep].any(0)
            if pred_boxes is not None:
                boxes = box_cxcywh_to_xyxy(pred_boxes[b]) * torch.tensor(
                    [input_size[1], input_size[0], input_size[1], input_size[0]], dtype=torch.float32
                )
                boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([input_size[1], input_size[0]] * 2))
            else:  # outputs without the box head's boxes: tight boxes of the binary instance masks
                boxes = masks_to_boxes(instance_masks)
            boxes = boxes * torch.tensor(
                [width / input_size[1], height / input_size[0], width / input_size[1], height / input_size[0]]
            )
            resized_instances = _to_size(instance_masks[keep], (height, width))
            instances = []
            for i, q in enumerate(keep.tolist()):
                box = boxes[q]
                if box[2] > box[0] and box[3] > box[1]:
                    instances.append({"mask": resized_instances[i], "box": box, "score": float(scores[q])})
            merged = _to_size(merged[None], (height, width))[0]
            no_target = len(keep) == 0
            results.append(
                {
                    "mask": torch.zeros_like(merged) if no_target else merged,
                    "no_target": no_target,
                    "target_score": float(scores.max()) if len(scores) else 0.0,
                    "instances": suppress_duplicate_instances(instances, instance_nms_threshold),
                    "semantic_mask": merged,
                    "boxes": boxes,
                    "scores": scores,
                }
            )
        return results


def _probabilities(outputs: ReferringSegmentationOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p_obj (B, N), p_target (B,)[:, None])`` from the two-way logits of an ``InstanceVGOutput``, or from the
    contract fields (``sigmoid(pred_scores)`` and ``1 - sigmoid(no_target_logits)``, equal up to rounding)."""
    if (
        isinstance(outputs, InstanceVGOutput)
        and outputs.pred_class_logits is not None
        and outputs.no_target_class_logits is not None
    ):
        object_prob = outputs.pred_class_logits.softmax(-1)[..., 0]
        target_prob = outputs.no_target_class_logits[:, 0].sigmoid()
    elif outputs.pred_scores is not None and outputs.no_target_logits is not None:
        object_prob = outputs.pred_scores.sigmoid()
        target_prob = (-outputs.no_target_logits.reshape(-1)).sigmoid()
    else:
        missing = "pred_scores" if outputs.pred_scores is None else "no_target_logits"
        raise ValueError(
            f"the model outputs have no '{missing}' (nor pred_class_logits and no_target_class_logits); "
            "post_process_referring_segmentation needs them"
        )
    return object_prob, target_prob[:, None]


def _to_size(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize bool masks ``(N, h, w)`` to ``size`` with nearest neighbour (OpenCV ``INTER_NEAREST`` indices)."""
    if tuple(masks.shape[-2:]) == tuple(size) or masks.shape[0] == 0:
        return masks.reshape(masks.shape[0], *size) if masks.shape[0] == 0 else masks
    return F.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5
