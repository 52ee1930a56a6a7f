"""Processor for InstAlign: image processor + tokenizer, and post-processing to masks and boxes.

``processor(images=..., text=...)`` takes one sentence per image and returns what
``InstAlignForReferringSegmentation.forward`` takes. ``post_process_referring_segmentation``
turns the model outputs into the per-sample dicts described in ``docs/pipeline.md``: the union
mask of the referred objects at the original image size (from the Adaptive Instance Aggregation
logits, eq. 8), the no-target decision (eq. 10-12) and the selected instances with their boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ...oov import warn_unknown_words
from ...validation import check_max_length, check_sentences
from .image_processing_instalign import masks_to_boxes

__all__ = ["InstAlignProcessor", "masks_to_boxes"]


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
        image_indices: Sequence[int] | torch.Tensor | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Encode images and their sentences (one sentence per image, or several with ``image_indices``).

        Returns ``pixel_values`` (B, 3, H, W), ``input_ids`` and ``attention_mask`` (B, L) padded to
        the longest sentence and truncated to the tokenizer's ``model_max_length``, and
        ``mask_labels`` (list of (n_b, H, W)) when ``instances`` are given.

        ``image_indices`` (one per sentence) pairs sentence ``j`` with image ``image_indices[j]``: each image
        is processed once, ``instances`` has one list per sentence, and the output gains ``image_indices``
        (a long tensor) so that the model encodes each image once.

        Raises:
            ValueError: no images or text, an empty or blank sentence, an empty list, a count mismatch,
                or a ``max_length`` beyond the tokenizer's ``model_max_length``.
        """
        if images is None or text is None:
            raise ValueError("InstAlignProcessor needs both images and text (one sentence per image)")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        image_list = self.image_processor.make_list_of_images(images)
        texts = check_sentences(text)
        check_max_length(max_length, self._tokenizer_limit(), "the tokenizer (model_max_length)")
        if image_indices is None:
            if len(texts) != len(image_list):
                raise ValueError(
                    f"got {len(image_list)} image(s) and {len(texts)} sentence(s); pass exactly one sentence per "
                    "image, or image_indices"
                )
            image_inputs = dict(self.image_processor(image_list, instances=instances, **kwargs))
        else:
            indices = torch.as_tensor(image_indices, dtype=torch.long).flatten()
            if len(indices) != len(texts):
                raise ValueError(
                    f"got {len(indices)} image_indices for {len(texts)} sentence(s); pass one per sentence"
                )
            if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(image_list)):
                raise ValueError(
                    f"image_indices must lie in [0, {len(image_list)}) for {len(image_list)} image(s)"
                )
            image_inputs = dict(self.image_processor(image_list, **kwargs))
            if instances is not None:  # one instance list per sentence, at the size of its image
                image_inputs["mask_labels"] = self.image_processor.prepare_mask_labels(
                    instances,
                    [self.image_processor.image_size(image_list[i]) for i in indices.tolist()],
                    tuple(image_inputs["pixel_values"].shape[-2:]),
                )
            image_inputs["image_indices"] = indices
        text_inputs = self.tokenizer(
            texts,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        warn_unknown_words(self.tokenizer, texts, text_inputs["input_ids"])  # mostly unknown sentences
        data = image_inputs
        data["input_ids"] = text_inputs["input_ids"]
        data["attention_mask"] = text_inputs["attention_mask"]
        return BatchFeature(data=data)

    def _tokenizer_limit(self) -> int | None:
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and limit < 1_000_000 else None  # huge = unset

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample; see
        :meth:`InstAlignImageProcessor.post_process_referring_segmentation` (``docs/pipeline.md``)."""
        return self.image_processor.post_process_referring_segmentation(
            outputs,
            target_sizes=target_sizes,
            threshold=threshold,
            mask_threshold=mask_threshold,
            no_target_threshold=no_target_threshold,
        )
