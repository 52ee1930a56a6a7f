"""Checks of user inputs, shared by every model's processor, the pipeline and the CLI.

Validation happens once, where inputs enter refseg (processor, image processor, pipeline, CLI, the
task model's ``forward``); each check raises ``ValueError`` with a message that names the problem.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Sequence
from numbers import Real
from typing import Any

import torch

__all__ = [
    "DEFAULT_MAX_INPUT_SIDE",
    "check_finite_logits",
    "check_image_statistics",
    "check_max_length",
    "check_positive_size",
    "check_probability",
    "check_sentences",
    "is_blank",
    "is_panic",
    "max_input_side",
    "text_position_limit",
]

#: default of the largest processor size side (``size``); ``$REFSEG_MAX_INPUT_SIDE`` changes it
DEFAULT_MAX_INPUT_SIDE = 4096
MAX_INPUT_SIDE_ENV = "REFSEG_MAX_INPUT_SIDE"
# Unicode major categories of visible characters: letters, numbers, punctuation, symbols
_VISIBLE_CATEGORIES = frozenset("LNPS")
# letters and symbols drawn as nothing: Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), braille blank (U+2800)
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# text encoders whose positions start after the padding index (position ids padding_idx + 1 ...)
_OFFSET_POSITION_TYPES = {"roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "xlm-roberta-xl"}


def check_sentences(text: Any, name: str = "text") -> list[str]:
    """One sentence or a non-empty list of them -> list of strings; empty or blank sentences are refused.

    Blank means nothing visible (:func:`is_blank`): spaces, zero-width and other format characters only.
    """
    if isinstance(text, str):
        sentences = [text]
    elif isinstance(text, Sequence) and not isinstance(text, bytes):
        sentences = list(text)
        if not sentences:
            raise ValueError(f"{name} is an empty list; pass at least one sentence")
    else:
        raise ValueError(f"{name} must be a string or a list of strings, got {type(text).__name__}")
    for i, sentence in enumerate(sentences):
        where = name if isinstance(text, str) else f"{name}[{i}]"
        if not isinstance(sentence, str):
            raise ValueError(f"{where} must be a string, got {type(sentence).__name__}")
        if is_blank(sentence):
            shown = sentence if len(sentence) <= 40 else sentence[:40] + "..."
            raise ValueError(
                f"{where} is an empty sentence ({shown!r}: only spaces or invisible characters); give the "
                "expression to segment"
            )
    return sentences


def is_panic(error: BaseException) -> bool:
    """True for a Rust panic surfacing through pyo3 (``pyo3_runtime.PanicException``, a ``BaseException``)."""
    return type(error).__name__ == "PanicException"


def is_blank(sentence: str) -> bool:
    """True when ``sentence`` has nothing visible: no letter, digit, punctuation mark or symbol.

    Spaces, control and format characters (Unicode categories Z*, C*: e.g. the zero-width space U+200B, the
    zero-width non-joiner U+200C, the word joiner U+2060) and combining marks alone (M*) are invisible, and so
    are the letters and symbols drawn as nothing (Hangul fillers such as U+3164, the braille blank U+2800).
    """
    return not any(
        unicodedata.category(c)[0] in _VISIBLE_CATEGORIES and c not in _BLANK_GLYPHS for c in sentence
    )


def check_probability(value: Any, name: str) -> float:
    """A finite number in [0, 1] (thresholds on probabilities) -> float."""
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise ValueError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be a finite number in [0, 1], got {number}")
    return number


def max_input_side() -> int:
    """The largest processor ``size`` side in force: ``$REFSEG_MAX_INPUT_SIDE``, else :data:`DEFAULT_MAX_INPUT_SIDE`."""
    text = os.environ.get(MAX_INPUT_SIDE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_INPUT_SIDE
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_INPUT_SIDE_ENV} must be a positive whole number of pixels, got {text!r}")
    return int(text)


def check_positive_size(size: dict[str, int], name: str = "size") -> dict[str, int]:
    """``{"height", "width"}`` with positive integer values, each at most :func:`max_input_side` -> the same dict.

    Every image is resized to this size before the model runs, so a processor config asking for 10^6 pixels
    per side would allocate terabytes; it is refused when the processor is built (or loaded).
    """
    limit = max_input_side()
    for key in ("height", "width"):
        if size[key] <= 0:
            raise ValueError(f"{name} {key} must be a positive number of pixels, got {size[key]}")
        if size[key] > limit:
            raise ValueError(
                f"{name} {key} {size[key]} is above refseg's limit of {limit} pixels per side for the model input "
                f"(images are resized to it); fix the processor config, or raise the limit with {MAX_INPUT_SIDE_ENV}"
            )
    return size


def check_image_statistics(
    image_mean: Sequence[float], image_std: Sequence[float], num_channels: int = 3
) -> tuple[list[float], list[float]]:
    """Per-channel normalisation statistics: ``num_channels`` finite means, finite non-zero stds."""
    out = []
    for name, values in (("image_mean", image_mean), ("image_std", image_std)):
        if isinstance(values, Real):
            values = [values] * num_channels
        values = [float(v) for v in values]
        if len(values) != num_channels:
            raise ValueError(f"{name} must have {num_channels} values (one per channel), got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{name} must be finite, got {values}")
        out.append(values)
    if any(v == 0 for v in out[1]):
        raise ValueError(f"image_std must not contain 0 (normalisation divides by it), got {out[1]}")
    return out[0], out[1]


def text_position_limit(text_config: Any) -> int | None:
    """How many tokens the text encoder of ``text_config`` can embed (``None`` when unknown).

    RoBERTa-style encoders start their position ids after the padding index, so they hold
    ``max_position_embeddings - pad_token_id - 1`` tokens (512 for RoBERTa-base); BERT holds
    ``max_position_embeddings``.
    """
    positions = getattr(text_config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(text_config, "model_type", None) in _OFFSET_POSITION_TYPES:
        return int(positions) - int(getattr(text_config, "pad_token_id", 1) or 0) - 1
    return int(positions)


def check_max_length(
    max_length: Any, limit: int | None, what: str = "the text encoder", name: str = "max_length"
) -> int | None:
    """``None`` or a positive int not above ``limit`` (the tokens ``what`` can embed)."""
    if max_length is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"{name} must be a positive integer, got {max_length!r}")
    if limit is not None and max_length > limit:
        raise ValueError(f"{name} {max_length} is beyond the {limit} token positions of {what}")
    return max_length


def check_finite_logits(tensor: torch.Tensor, name: str) -> None:
    """Refuse NaN and infinite model outputs.

    A NaN turns into ``score: nan`` and a random decision; ``+inf`` / ``-inf`` into probabilities of exactly
    1 or 0 ("no target, p=0.00", or "target found" with no instance), which look like confident answers.
    """
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        kinds = [
            kind
            for kind, found in (
                ("NaN", torch.isnan(tensor)),
                ("+inf", torch.isposinf(tensor)),
                ("-inf", torch.isneginf(tensor)),
            )
            if bool(found.any())
        ]
        count = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"the model produced {' and '.join(kinds)} {name} ({count} of {tensor.numel()} values are not "
            "finite); its weights or inputs are broken (check the checkpoint, the dtype and the pixel values)"
        )
