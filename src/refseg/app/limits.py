"""The web app's input limits: upload size, sentence length, caption length (see ``docs/app.md``).

Every limit is a ``refseg app`` flag; a request over a limit gets one message that names the limit
and the value that broke it, never a server path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from refseg.validation import is_blank

__all__ = ["AppLimits", "caption_text", "check_sentence", "check_upload_size"]


@dataclass(frozen=True)
class AppLimits:
    """Limits of one app (defaults: 10 MB uploads, 300 characters / 60 words, 120-character caption)."""

    max_upload_mb: float = 10.0
    max_sentence_chars: int = 300
    max_sentence_words: int = 60
    caption_chars: int = 120
    queue_size: int = 32

    def __post_init__(self) -> None:
        for name in (
            "max_upload_mb",
            "max_sentence_chars",
            "max_sentence_words",
            "caption_chars",
            "queue_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.caption_chars < 4:
            raise ValueError(f"caption_chars must be at least 4, got {self.caption_chars}")

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes (1 MB = 10**6 bytes, as Gradio counts)."""
        return int(self.max_upload_mb * 1_000_000)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1_000_000:.1f} MB"


def check_upload_size(nbytes: int, limits: AppLimits) -> None:
    """Refuse an upload larger than ``limits.max_upload_mb``."""
    if nbytes > limits.max_upload_bytes:
        raise ValueError(
            f"The image file is {_mb(nbytes)}; this app accepts images up to {limits.max_upload_mb:g} MB."
        )


def check_sentence(sentence: object, limits: AppLimits) -> str:
    """The stripped sentence; refuse a missing, blank or too long one (characters, then words)."""
    if sentence is not None and not isinstance(sentence, str):
        raise ValueError(f"The sentence must be text, got {type(sentence).__name__}.")
    sentence = (sentence or "").strip()
    if is_blank(sentence):  # also zero-width and other invisible characters only
        raise ValueError("Type a sentence that describes what to segment, e.g. 'the red circle'.")
    if len(sentence) > limits.max_sentence_chars:
        raise ValueError(
            f"The sentence is {len(sentence):,} characters long; this app accepts at most "
            f"{limits.max_sentence_chars:,} characters. Describe the object in a short phrase."
        )
    words = len(sentence.split())
    if words > limits.max_sentence_words:
        raise ValueError(
            f"The sentence has {words:,} words; this app accepts at most {limits.max_sentence_words:,} "
            "words. Describe the object in a short phrase."
        )
    return sentence


def caption_text(sentence: str, limits: AppLimits) -> str:
    """``sentence`` cut to ``limits.caption_chars`` characters (ending in "...") for the overlay's caption."""
    if len(sentence) <= limits.caption_chars:
        return sentence
    return sentence[: limits.caption_chars - 3].rstrip() + "..."
