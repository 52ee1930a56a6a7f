"""Processor for InstanceVG: image processor + the BEiT-3 tokenizer (XLM-R sentencepiece), and post-processing.

The released code cleans every expression (lower case; ``. , ' ! ? " ( ) * # : ;`` deleted; ``-`` and ``/``
replaced by spaces), tokenizes it with ``XLMRobertaTokenizer`` over BEiT-3's ``beit3.spm`` and keeps at most
``max_token`` ids (``<s>`` and ``</s>`` included: 50 for the GRES models, 20 for RefCOCO), padded on the right.
Padding to ``max_token`` does not change the outputs, so batches are padded to their longest sentence.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers.feature_extraction_utils import BatchFeature

from ...processing_utils import ReferringSegmentationProcessorBase
from ...validation import is_blank

__all__ = ["InstanceVGProcessor", "clean_expression", "tokenizer_from_sentencepiece"]

_DELETED = str.maketrans({c: None for c in ".,'!?\"()*#:;"})


def clean_expression(text: str) -> str:
    """The original's ``clean_string``: lower-case, delete ``. , ' ! ? " ( ) * # : ;``, ``-`` and ``/`` -> space."""
    return text.lower().translate(_DELETED).replace("-", " ").replace("/", " ")


def tokenizer_from_sentencepiece(spm_path: str | Path, model_max_length: int = 50):
    """``XLMRobertaTokenizer`` for a BEiT-3 sentencepiece model (``beit3.spm``).

    Ids follow fairseq / XLM-R: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, piece ``k`` -> ``k + 1``. The
    transformers tokenizer reproduces this only for a Unigram sentencepiece model, which is checked.
    Needs the ``sentencepiece`` package.
    """
    from sentencepiece import SentencePieceProcessor, sentencepiece_model_pb2
    from transformers import XLMRobertaTokenizer

    spm_path = Path(spm_path)
    if not spm_path.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {spm_path}")
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm_path.read_bytes())
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise ValueError(
            f"{spm_path} is not a Unigram sentencepiece model (type {proto.trainer_spec.model_type}); the "
            "XLM-R tokenizer of transformers would give ids different from the original's"
        )
    SentencePieceProcessor(model_file=str(spm_path))  # fails early on a corrupt file
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(spm_path, Path(folder) / "sentencepiece.bpe.model")
        tokenizer = XLMRobertaTokenizer.from_pretrained(folder, model_max_length=model_max_length)
    return tokenizer


class InstanceVGProcessor(ReferringSegmentationProcessorBase):
    r"""Wraps an :class:`InstanceVGImageProcessor` and the BEiT-3 XLM-R tokenizer.

    The tokenizer's ``model_max_length`` is the number of text tokens (50 or 20 for the released models).
    Validation, tokenization and the out-of-vocabulary warning are those of
    :class:`refseg.processing_utils.ReferringSegmentationProcessorBase`; the sentences are cleaned as the
    released code does (:func:`clean_expression`) before they are tokenized.
    """

    @property
    def model_input_names(self) -> list[str]:
        """The model inputs this processor produces."""
        return ["pixel_values", "input_ids", "attention_mask"]

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        instances: Sequence[Sequence[Any]] | None = None,
        return_tensors: str | None = "pt",
        max_length: int | None = None,
        padding: bool | str = True,
        truncation: bool = True,
        image_indices: Any = None,
        **kwargs,
    ) -> BatchFeature:
        """Encode images and their sentences (one sentence per image).

        Returns ``pixel_values`` (B, 3, 320, 320), ``input_ids`` and ``attention_mask`` (B, L) (cleaned text,
        right-padded to the longest sentence, or to ``max_length`` with ``padding="max_length"``; cut to at most
        ``max_length`` or the tokenizer's ``model_max_length`` tokens unless ``truncation=False``), and with
        ``instances`` the training targets ``mask_labels`` (and ``box_labels``). BEiT-3 encodes every image
        together with its sentence, so with ``image_indices`` (one per sentence) each image is processed once and
        repeated for each of its sentences (no ``image_indices`` is returned).
        """
        return super().__call__(
            images=images,
            text=text,
            instances=instances,
            return_tensors=return_tensors,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            image_indices=image_indices,
            **kwargs,
        )

    _pair_images = ReferringSegmentationProcessorBase._repeat_images

    def _prepare_texts(self, texts: list[str]) -> list[str]:
        """The released code's cleaning (:func:`clean_expression`); an expression left empty is refused."""
        cleaned = [clean_expression(t) for t in texts]
        for t, c in zip(texts, cleaned):
            if is_blank(c):
                raise ValueError(f"the expression {t!r} is empty after cleaning")
        return cleaned
