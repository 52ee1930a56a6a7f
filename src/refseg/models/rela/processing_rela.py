"""Processor for ReLA: :class:`RelaImageProcessor` + the BERT-base-uncased tokenizer, tokenized as released.

The released code encodes each sentence with its special tokens, keeps the first ``max_length`` ids (20; a
sentence longer than 18 word pieces loses its ``[SEP]``) and always pads to ``max_length``. The padding
matters: the decoder's language attention reads every position, padding included, so another length gives
other outputs. ``max_length`` is the tokenizer's ``model_max_length`` (set to the config's
``max_text_length`` by ``refseg convert rela``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F
from transformers.feature_extraction_utils import BatchFeature

from ...processing_utils import ReferringSegmentationProcessorBase

__all__ = ["RelaProcessor"]


class RelaProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps a :class:`RelaImageProcessor` and a BERT tokenizer (``model_max_length`` = the sentence length).

    ``image_indices`` (one per sentence) repeats each image for each of its sentences: the language-aware
    encoder needs one pass per sentence.
    """

    @property
    def model_input_names(self) -> list[str]:
        """``pixel_values``, ``input_ids``, ``attention_mask``."""
        return ["pixel_values", "input_ids", "attention_mask"]

    _pair_images = ReferringSegmentationProcessorBase._repeat_images

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        instances: Sequence[Sequence[Any]] | None = None,
        image_indices: Sequence[int] | torch.Tensor | None = None,
        return_tensors: str | None = "pt",
        max_length: int | None = None,
        padding: bool | str = True,
        truncation: bool = True,
        **kwargs,
    ) -> BatchFeature:
        """Encode images and sentences; ``input_ids`` / ``attention_mask`` are ``(B, max_length)``: each
        sentence's ids with special tokens, cut to ``max_length`` (the released code's truncation, which can
        drop ``[SEP]``) and right-padded to it. ``padding`` and ``truncation`` are accepted for the shared
        pipeline and ignored: the model needs this fixed length."""
        length = max_length if max_length is not None else self._tokenizer_limit() or 20
        data = super().__call__(
            images=images,
            text=text,
            instances=instances,
            image_indices=image_indices,
            return_tensors=return_tensors,
            padding=True,
            truncation=False,
            **kwargs,
        )
        pad = int(self.tokenizer.pad_token_id)
        for key, value in (("input_ids", pad), ("attention_mask", 0)):
            cut = data[key][:, :length]
            data[key] = F.pad(cut, (0, length - cut.shape[1]), value=value)
        return data
