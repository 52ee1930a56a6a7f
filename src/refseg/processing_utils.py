"""Base processor of the referring-segmentation models: an image processor + a tokenizer.

``processor(images=..., text=...)`` validates the sentences once, encodes the images with the model's image
processor and the sentences with its tokenizer, and returns what the task model's ``forward`` takes.
``image_indices`` (one per sentence) pairs several sentences with one image; how a model consumes that
pairing (encode each image once, or repeat it per sentence) is the :meth:`_pair_images` hook; a model whose
original code normalises the sentences before tokenizing them overrides :meth:`_prepare_texts`.
``post_process_referring_segmentation`` forwards to the image processor (``docs/pipeline.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .out_of_vocabulary import warn_unknown_words
from .validation import check_max_length, check_sentences, is_panic

__all__ = ["ReferringSegmentationProcessorBase"]


def _image_index_tensor(image_indices: Any) -> torch.Tensor:
    """``image_indices`` as a flat long tensor; floats (even ``1.0``), booleans and non-numbers are refused,
    never truncated (``1.7`` would silently pair a sentence with image 1)."""
    try:
        indices = torch.as_tensor(
            image_indices if isinstance(image_indices, torch.Tensor) else np.asarray(image_indices)
        )
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"image_indices must be integers (one image index per sentence), got {type(image_indices).__name__}"
        ) from None
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        shown = indices.flatten()[:4].tolist()
        raise ValueError(
            f"image_indices must be integers (one image index per sentence), got {indices.dtype} values {shown}"
        )
    return indices.to(torch.long).flatten()


class ReferringSegmentationProcessorBase(ProcessorMixin):
    r"""Wraps a referring-segmentation image processor and a tokenizer.

    Args:
        image_processor: the model's image processor.
        tokenizer: any fast tokenizer with a pad token.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        """The image processor's inputs, then ``input_ids`` and ``attention_mask``."""
        return [*self.image_processor.model_input_names, "input_ids", "attention_mask"]

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

        Returns the image processor's outputs (``pixel_values`` (B, 3, H, W), ...), ``input_ids`` and
        ``attention_mask`` (B, L) padded to the longest sentence and truncated to ``max_length`` (at most the
        tokenizer's ``model_max_length``), and ``mask_labels`` (list of (n_b, H, W)) when ``instances`` are given.

        ``image_indices`` (one per sentence) pairs sentence ``j`` with image ``image_indices[j]``: each image
        is processed once and ``instances`` has one list per sentence (see :meth:`_pair_images`).

        Raises:
            ValueError: no images or text, an empty or blank sentence, an empty list, a count mismatch,
                or a ``max_length`` beyond the tokenizer's ``model_max_length``.
        """
        if images is None or text is None:
            raise ValueError(f"{type(self).__name__} needs both images and text (one sentence per image)")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        image_list = self.image_processor.make_list_of_images(images)
        texts = self._prepare_texts(check_sentences(text))
        check_max_length(max_length, self._tokenizer_limit(), "the tokenizer (model_max_length)")
        if image_indices is None:
            if len(texts) != len(image_list):
                raise ValueError(
                    f"got {len(image_list)} image(s) and {len(texts)} sentence(s); pass exactly one sentence per "
                    "image, or image_indices"
                )
            data = dict(self.image_processor(image_list, instances=instances, **kwargs))
        else:
            indices = _image_index_tensor(image_indices)
            if len(indices) != len(texts):
                raise ValueError(
                    f"got {len(indices)} image_indices for {len(texts)} sentence(s); pass one per sentence"
                )
            if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(image_list)):
                raise ValueError(
                    f"image_indices must lie in [0, {len(image_list)}) for {len(image_list)} image(s)"
                )
            data = self._pair_images(dict(self.image_processor(image_list, **kwargs)), indices)
            if instances is not None:  # one instance list per sentence, at the size of its image
                data["mask_labels"] = self.image_processor.prepare_mask_labels(
                    instances,
                    [self.image_processor.image_size(image_list[i]) for i in indices.tolist()],
                    tuple(data["pixel_values"].shape[-2:]),
                )
        try:
            text_inputs = self.tokenizer(
                texts,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                return_tensors="pt",
                return_token_type_ids=False,
            )
        except BaseException as err:  # noqa: BLE001 (a Rust panic is a BaseException)
            if not is_panic(err):
                raise
            source = getattr(self.tokenizer, "name_or_path", "") or "the tokenizer"
            raise ValueError(
                f"the tokenizer of {source} panicked on the sentence(s) {[t[:60] for t in texts[:3]]} "
                f"({' '.join(str(err).split())[:200]}); its tokenizer.json is broken or from another version"
            ) from None
        warn_unknown_words(self.tokenizer, texts, text_inputs["input_ids"])  # mostly unknown sentences
        data["input_ids"] = text_inputs["input_ids"]
        data["attention_mask"] = text_inputs["attention_mask"]
        return BatchFeature(data=data)

    def _prepare_texts(self, texts: list[str]) -> list[str]:
        """The sentences as the tokenizer gets them (validated, non-blank); by default unchanged."""
        return texts

    def _pair_images(self, data: dict[str, Any], indices: torch.Tensor) -> dict[str, Any]:
        """Image inputs (one entry per image) + ``image_indices`` (one per sentence) -> the model's inputs.

        By default the images stay encoded once and ``image_indices`` (a long tensor) is returned with them.
        """
        data["image_indices"] = indices
        return data

    def _repeat_images(self, data: dict[str, Any], indices: torch.Tensor) -> dict[str, Any]:
        """The ``_pair_images`` of models that fuse the sentence into the image encoder (each expression needs
        its own encoder pass): each image, processed once, is repeated for each of its sentences
        (``pixel_values`` and, where there is one, ``pixel_mask`` get one entry per sentence; no
        ``image_indices`` is returned)."""
        for key in ("pixel_values", "pixel_mask"):
            if key in data:
                data[key] = data[key].index_select(0, indices)
        return data

    def _tokenizer_limit(self) -> int | None:
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and limit < 1_000_000 else None  # huge = unset

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        no_target_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample; see the image processor's
        ``post_process_referring_segmentation`` (``docs/pipeline.md``): a threshold left ``None`` takes the
        model's default. Other keyword arguments (e.g. ``instance_nms_threshold``) go to it as given."""
        return self.image_processor.post_process_referring_segmentation(
            outputs,
            target_sizes=target_sizes,
            threshold=threshold,
            mask_threshold=mask_threshold,
            no_target_threshold=no_target_threshold,
            **kwargs,
        )
