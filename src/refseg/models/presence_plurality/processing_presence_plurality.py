"""Processor for the presence & plurality model: letterboxing image processor + BERT tokenizer.

``processor(images=..., text=...)`` returns what ``PresencePluralityForReferringSegmentation.forward`` takes:
``pixel_values``, ``pixel_mask``, ``input_ids``, ``attention_mask`` (and ``mask_labels`` with ``instances``).
``post_process_referring_segmentation`` returns the per-sample dicts of the referring-segmentation contract
(see :meth:`PresencePluralityImageProcessor.post_process_referring_segmentation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature

from ..instalign.processing_instalign import InstAlignProcessor

__all__ = ["PresencePluralityProcessor"]


class PresencePluralityProcessor(InstAlignProcessor):
    r"""Wraps a :class:`PresencePluralityImageProcessor` and a tokenizer (BERT-base-uncased in the paper).

    Args:
        image_processor: the :class:`PresencePluralityImageProcessor`.
        tokenizer: any fast tokenizer with a pad token.
    """

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "pixel_mask", "input_ids", "attention_mask"]

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
        """Encode images and their sentences, one sentence per image.

        ``image_indices`` (one per sentence) pairs sentence ``j`` with image ``image_indices[j]``. The encoder
        fuses the sentence into the visual features (Sec. 3.1), so an image cannot be encoded once for several
        sentences: each image is processed once, then repeated for each of its sentences (``pixel_values`` has
        one entry per sentence and no ``image_indices`` is returned). ``instances`` has one list per sentence.
        """
        if images is None or text is None:
            raise ValueError("PresencePluralityProcessor needs both images and text (one sentence per image)")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        image_list = self.image_processor.make_list_of_images(images)
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a list of strings (one sentence per image)")
        if image_indices is None:
            if len(texts) != len(image_list):
                raise ValueError(
                    f"got {len(image_list)} image(s) and {len(texts)} sentence(s); pass exactly one sentence per "
                    "image, or image_indices"
                )
            data = dict(self.image_processor(image_list, instances=instances, **kwargs))
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
            data = dict(self.image_processor(image_list, **kwargs))
            data["pixel_values"] = data["pixel_values"].index_select(0, indices)
            data["pixel_mask"] = data["pixel_mask"].index_select(0, indices)
            if instances is not None:
                sizes = [self.image_processor.image_size(image_list[i]) for i in indices.tolist()]
                data["mask_labels"] = self.image_processor.prepare_mask_labels(
                    instances, sizes, tuple(data["pixel_values"].shape[-2:])
                )
        text_inputs = self.tokenizer(
            texts,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        data["input_ids"] = text_inputs["input_ids"]
        data["attention_mask"] = text_inputs["attention_mask"]
        return BatchFeature(data=data)
