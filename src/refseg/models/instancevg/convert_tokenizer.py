"""The converter's check of ``--tokenizer beit3.spm``, done before anything is written.

The file must exist, parse as a sentencepiece model, be a Unigram model (transformers' XLM-R tokenizer gives
the original's ids only for those) and fit the checkpoint: its tokens must not outnumber the rows of the
model's text embedding table, or the pipeline would fail later with an index error. Each refusal is one
``ValueError`` (``FileNotFoundError`` for a missing file, ``ImportError`` without ``sentencepiece``) of one
plain line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...error_messages import one_line

__all__ = ["check_tokenizer_fits", "load_beit3_tokenizer"]


def load_beit3_tokenizer(path: str | Path, model_max_length: int) -> Any:
    """The XLM-R tokenizer of BEiT-3's sentencepiece model at ``path``, or a one-line error saying why not."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--tokenizer {path}: no such file (expected BEiT-3's sentencepiece model beit3.spm)"
        )
    try:
        from sentencepiece import SentencePieceProcessor, sentencepiece_model_pb2
    except ImportError as error:
        raise ImportError(
            "--tokenizer needs the sentencepiece and protobuf packages: pip install sentencepiece protobuf"
        ) from error
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
        SentencePieceProcessor(model_file=str(path))
    except (
        Exception
    ) as error:  # protobuf DecodeError, sentencepiece's RuntimeError: a corrupt or foreign file
        raise ValueError(
            f"--tokenizer {path} is not a sentencepiece model ({type(error).__name__}: {one_line(error)})"
        ) from error
    if len(proto.pieces) == 0:
        raise ValueError(f"--tokenizer {path} is not a sentencepiece model (it has no pieces)")
    unigram = sentencepiece_model_pb2.TrainerSpec.UNIGRAM
    if proto.trainer_spec.model_type != unigram:
        kind = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)
        raise ValueError(
            f"--tokenizer {path} is a {kind} sentencepiece model, not a Unigram one like BEiT-3's beit3.spm: "
            "its ids would differ from the original's"
        )
    from .processing_instancevg import tokenizer_from_sentencepiece

    try:
        return tokenizer_from_sentencepiece(path, model_max_length=model_max_length)
    except Exception as error:
        raise ValueError(f"--tokenizer {path} cannot be converted: {one_line(error)}") from error


def check_tokenizer_fits(tokenizer: Any, vocab_size: int, path: str | Path) -> None:
    """Refuse a tokenizer whose ids would run past the model's text embedding table (``vocab_size`` rows)."""
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"--tokenizer {path} has {len(tokenizer)} tokens, more than the {vocab_size} rows of the checkpoint's "
            "text embedding table: it is not the tokenizer of this model (use BEiT-3's beit3.spm)"
        )
