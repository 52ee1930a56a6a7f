"""Processor for TemplateModel: :class:`TemplateModelImageProcessor` + the text encoder's tokenizer.

``processor(images=..., text=...)`` returns what ``TemplateModelForReferringSegmentation.forward`` takes:
``pixel_values``, ``input_ids``, ``attention_mask`` (and ``mask_labels`` with ``instances``).
``post_process_referring_segmentation`` returns the per-sample dicts of the referring-segmentation contract
(see :meth:`TemplateModelImageProcessor.post_process_referring_segmentation`). The plumbing is
:class:`refseg.processing_utils.ReferringSegmentationProcessorBase`.
"""

from __future__ import annotations

from ...processing_utils import ReferringSegmentationProcessorBase

__all__ = ["TemplateModelProcessor"]


class TemplateModelProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps a :class:`TemplateModelImageProcessor` and a tokenizer (TODO(paper): the paper's tokenizer).

    ``image_indices`` (one per sentence) repeats each image for each of its sentences, so ``forward`` takes no
    ``image_indices``. TODO(paper): a model that encodes an image once for several sentences keeps the base
    class's ``_pair_images`` and takes ``image_indices`` in ``forward`` (as ``refseg.models.instalign`` does).

    Args:
        image_processor: the :class:`TemplateModelImageProcessor`.
        tokenizer: any fast tokenizer with a pad token.
    """

    @property
    def model_input_names(self) -> list[str]:
        """``pixel_values``, ``input_ids``, ``attention_mask``."""
        return ["pixel_values", "input_ids", "attention_mask"]

    _pair_images = ReferringSegmentationProcessorBase._repeat_images
