"""Processor for the presence & plurality model: letterboxing image processor + BERT tokenizer.

``processor(images=..., text=...)`` returns what ``PresencePluralityForReferringSegmentation.forward`` takes:
``pixel_values``, ``pixel_mask``, ``input_ids``, ``attention_mask`` (and ``mask_labels`` with ``instances``).
``post_process_referring_segmentation`` returns the per-sample dicts of the referring-segmentation contract
(see :meth:`PresencePluralityImageProcessor.post_process_referring_segmentation`). The plumbing is
:class:`refseg.processing_utils.ReferringSegmentationProcessorBase`.
"""

from __future__ import annotations

from ...processing_utils import ReferringSegmentationProcessorBase

__all__ = ["PresencePluralityProcessor"]


class PresencePluralityProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps a :class:`PresencePluralityImageProcessor` and a tokenizer (BERT-base-uncased in the paper).

    ``image_indices`` (one per sentence) pairs sentence ``j`` with image ``image_indices[j]``. The encoder
    fuses the sentence into the visual features (Sec. 3.1), so an image cannot be encoded once for several
    sentences: each image is processed once, then repeated for each of its sentences (``pixel_values`` has
    one entry per sentence and no ``image_indices`` is returned). ``instances`` has one list per sentence.

    Args:
        image_processor: the :class:`PresencePluralityImageProcessor`.
        tokenizer: any fast tokenizer with a pad token.
    """

    @property
    def model_input_names(self) -> list[str]:
        """``pixel_values``, ``pixel_mask``, ``input_ids``, ``attention_mask``."""
        return ["pixel_values", "pixel_mask", "input_ids", "attention_mask"]

    _pair_images = ReferringSegmentationProcessorBase._repeat_images
