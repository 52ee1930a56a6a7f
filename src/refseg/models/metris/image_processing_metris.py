"""Image processor for METRIS: the 480x480 squash resize with ImageNet normalisation, and post-processing.

METRIS (App. A) resizes inputs to 480 x 480; its Swin encoder expects the ImageNet statistics. Resizing,
rescaling, normalising and building ``mask_labels`` are the same as InstAlign's, whose image processor this
class extends. ``post_process_referring_segmentation`` reads METRIS's single foreground map: the union mask
is the thresholded ``semantic_mask_logits``, the no-target decision comes from the no-target classifier
(App. A), and the instances are the connected components of the union mask (METRIS has no instance queries),
with boxes from their masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...modeling.connected_components import connected_component_instances
from ..instalign.image_processing_instalign import InstAlignImageProcessor

__all__ = ["MetrisImageProcessor"]


def _field(outputs: Any, name: str) -> torch.Tensor:
    value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
    if value is None:
        raise ValueError(f"the model outputs have no '{name}'; post_process_referring_segmentation needs it")
    return value


class MetrisImageProcessor(InstAlignImageProcessor):
    r"""Resize to ``size`` (480 x 480 by default), rescale to [0, 1], normalise; optionally ``mask_labels``.

    Takes the arguments of :class:`~refseg.models.instalign.InstAlignImageProcessor`.
    """

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample.

        Args:
            outputs: a ``MetrisOutput`` (or a dict) with ``semantic_mask_logits`` (B, h, w) and
                ``no_target_logits`` (B,).
            target_sizes: per sample ``(height, width)`` of the original image; ``None`` keeps the model input size.
            threshold: instances (connected components) whose mean foreground probability is not above it are
                dropped.
            mask_threshold: a pixel is foreground when the sigmoid of its upsampled logit exceeds it.
            no_target_threshold: the sample is no-target when ``sigmoid(no_target_logits)`` exceeds it.

        Returns:
            ``[{"mask": bool (H, W), "no_target": bool, "target_score": float, "instances": [{"mask": bool (H, W),
            "box": float [x0, y0, x1, y1], "score": float}], "semantic_mask": bool (H, W)}]``. The logits are
            upsampled bilinearly to the model input size, then to the target size. When the sample is judged
            no-target, ``mask`` is all False and ``instances`` is empty; ``semantic_mask`` is the thresholded
            map before that decision (ReLA's GRES evaluator counts it for a wrongly rejected target).
        """
        semantic = _field(outputs, "semantic_mask_logits").detach().float().cpu()
        no_target_logits = _field(outputs, "no_target_logits").detach().float().cpu().reshape(-1)
        batch = semantic.shape[0]
        if no_target_logits.shape[0] != batch:
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
            probabilities = self._upsample(semantic[b][None], input_size, size)[0].sigmoid()
            semantic_mask = probabilities > mask_threshold
            if no_target:
                union, instances = torch.zeros(size, dtype=torch.bool), []
            else:
                union = semantic_mask
                instances = [
                    inst
                    for inst in connected_component_instances(semantic_mask, probabilities)
                    if inst["score"] > threshold
                ]
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
