"""Processor for METRIS: image processor + BERT tokenizer (Sec. 4.1), and post-processing to masks and boxes.

``processor(images=..., text=...)`` takes one sentence per image and returns what
``MetrisForReferringSegmentation.forward`` takes; sentences are truncated to ``max_length`` tokens (20 by
default, [CLS] and [SEP] included). ``post_process_referring_segmentation`` forwards to
:meth:`MetrisImageProcessor.post_process_referring_segmentation`.
"""

from __future__ import annotations

from typing import Any

from transformers.feature_extraction_utils import BatchFeature

from ...processing_utils import ReferringSegmentationProcessorBase

__all__ = ["MetrisProcessor"]

DEFAULT_MAX_TEXT_LENGTH = 20


class MetrisProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps a :class:`MetrisImageProcessor` and a tokenizer (BERT-base uncased in the paper).

    Args:
        image_processor: the :class:`MetrisImageProcessor`.
        tokenizer: any fast tokenizer with a pad token whose first token plays the role of [CLS].
    """

    def __call__(
        self, *args: Any, max_length: int | None = DEFAULT_MAX_TEXT_LENGTH, **kwargs: Any
    ) -> BatchFeature:
        """Encode images and one sentence per image as
        :meth:`~refseg.processing_utils.ReferringSegmentationProcessorBase.__call__` does: ``pixel_values``
        (B, 3, H, W), ``input_ids`` and ``attention_mask`` (B, L) padded to the longest sentence (``padding``) and
        truncated to ``max_length`` tokens (20 by default), and ``mask_labels`` (list of (n_b, H, W)) when
        ``instances`` are given. METRIS encodes each image with its expression's words, so with ``image_indices``
        each image is processed once and repeated for each of its sentences (no ``image_indices`` is returned)."""
        return super().__call__(*args, max_length=max_length, **kwargs)

    _pair_images = ReferringSegmentationProcessorBase._repeat_images
