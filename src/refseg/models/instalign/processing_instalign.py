"""Processor for InstAlign: image processor + tokenizer, and post-processing to masks and boxes.

``processor(images=..., text=...)`` takes one sentence per image and returns what
``InstAlignForReferringSegmentation.forward`` takes. ``post_process_referring_segmentation``
turns the model outputs into the per-sample dicts of DESIGN.md ("Processor" contract): the union
mask of the referred objects at the original image size (from the Adaptive Instance Aggregation
logits, eq. 8), the no-target decision (eq. 10-12) and the selected instances with their boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

__all__ = ["InstAlignProcessor", "masks_to_boxes"]


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


class InstAlignProcessor(ProcessorMixin):
    r"""Wraps an :class:`InstAlignImageProcessor` and a tokenizer (RoBERTa in the paper).

    Args:
        image_processor: the :class:`InstAlignImageProcessor`.
        tokenizer: any fast tokenizer with a pad token.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "input_ids", "attention_mask"]

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        instances: Sequence[Sequence[Any]] | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Encode images and their sentences (one sentence per image).

        Returns ``pixel_values`` (B, 3, H, W), ``input_ids`` and ``attention_mask`` (B, L) padded to
        the longest sentence and truncated to the tokenizer's ``model_max_length``, and
        ``mask_labels`` (list of (n_b, H, W)) when ``instances`` are given.
        """
        if images is None or text is None:
            raise ValueError("InstAlignProcessor needs both images and text (one sentence per image)")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        image_list = self.image_processor.make_list_of_images(images)
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a list of strings (one sentence per image)")
        if len(texts) != len(image_list):
            raise ValueError(
                f"got {len(image_list)} image(s) and {len(texts)} sentence(s); pass exactly one sentence per image"
            )
        image_inputs = self.image_processor(image_list, instances=instances, **kwargs)
        text_inputs = self.tokenizer(
            texts,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        data = dict(image_inputs)
        data["input_ids"] = text_inputs["input_ids"]
        data["attention_mask"] = text_inputs["attention_mask"]
        return BatchFeature(data=data)

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
        """
        pred_masks = _output_field(outputs, "pred_masks").detach().float().cpu()
        pred_scores = _output_field(outputs, "pred_scores").detach().float().cpu()
        semantic = _output_field(outputs, "semantic_mask_logits").detach().float().cpu()
        no_target_logits = _output_field(outputs, "no_target_logits").detach().float().cpu().reshape(-1)
        batch = pred_masks.shape[0]
        if pred_scores.shape[0] != batch or semantic.shape[0] != batch or no_target_logits.shape[0] != batch:
            raise ValueError("the model outputs disagree on the batch size")
        input_size = (self.image_processor.size["height"], self.image_processor.size["width"])
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
            union = self._upsample(semantic[b][None], input_size, size)[0].sigmoid() > mask_threshold
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
