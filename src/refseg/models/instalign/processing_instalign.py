"""Processor for InstAlign: image processor + tokenizer, and post-processing to masks and boxes.

``processor(images=..., text=...)`` takes one sentence per image and returns what
``InstAlignForReferringSegmentation.forward`` takes. ``post_process_referring_segmentation``
turns the model outputs into the per-sample dicts described in ``docs/pipeline.md``: the union
mask of the referred objects at the original image size (from the Adaptive Instance Aggregation
logits, eq. 8), the no-target decision (eq. 10-12) and the selected instances with their boxes.
The plumbing is :class:`refseg.processing_utils.ReferringSegmentationProcessorBase`.
"""

from __future__ import annotations

from ...boxes import masks_to_boxes
from ...processing_utils import ReferringSegmentationProcessorBase

__all__ = ["InstAlignProcessor", "masks_to_boxes"]


class InstAlignProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps an :class:`InstAlignImageProcessor` and a tokenizer (RoBERTa in the paper).

    With ``image_indices`` each image is encoded once and the output gains ``image_indices`` (a long tensor).

    Args:
        image_processor: the :class:`InstAlignImageProcessor`.
        tokenizer: any fast tokenizer with a pad token.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        """``pixel_values``, ``input_ids``, ``attention_mask``."""
        return ["pixel_values", "input_ids", "attention_mask"]
