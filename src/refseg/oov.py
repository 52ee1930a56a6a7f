"""Out-of-vocabulary sentences: warn once when a sentence is mostly words the tokenizer does not know.

A word-level tokenizer (such as the bundled demo model's, built on the synthetic grammar's few dozen words)
turns every unknown word into its ``unk_token``: "the cat" becomes "the <unk>", and the model then
answers confidently about nothing in particular. Every processor calls :func:`warn_unknown_words`
after tokenising, so the user learns which words the model never saw. Sub-word tokenizers (RoBERTa's
byte-level BPE, BERT's WordPiece) rarely or never produce ``unk_token`` and so never warn.
"""

from __future__ import annotations

import string
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["OutOfVocabularyWarning", "unknown_words", "warn_unknown_words"]

#: words already named in a warning, per tokenizer (so each word is named once)
_WARNED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_WARNED_BY_ID: dict[int, set[str]] = {}


class OutOfVocabularyWarning(UserWarning):
    """A sentence is mostly made of words that the model's tokenizer maps to its unknown token."""


def _words(text: str) -> list[str]:
    """Whitespace-separated words with surrounding punctuation stripped (punctuation-only words dropped)."""
    words = (w.strip(string.punctuation) for w in text.split())
    return [w for w in words if w]


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` (in order, without repeats) that ``tokenizer`` encodes with its ``unk_token``.

    Empty when the tokenizer has no unknown token (e.g. byte-level BPE).
    """
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    unknown: list[str] = []
    for word in _words(text):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if unk_id in ids and word not in unknown:
            unknown.append(word)
    return unknown


def _warned_set(tokenizer: Any) -> set[str]:
    try:
        return _WARNED.setdefault(tokenizer, set())
    except TypeError:  # not weak-referenceable
        return _WARNED_BY_ID.setdefault(id(tokenizer), set())


def warn_unknown_words(
    tokenizer: Any,
    texts: Sequence[str],
    input_ids: Any = None,
    min_fraction: float = 0.5,
) -> list[str]:
    """Warn (:class:`OutOfVocabularyWarning`) when a sentence is mostly unknown to ``tokenizer``.

    A sentence counts as mostly unknown when at least ``min_fraction`` of its words map to the
    tokenizer's ``unk_token``. The warning names the unknown words and is given once per tokenizer and
    word: a word that was already named is not named again. ``input_ids`` (the batch the processor
    just encoded, optional) lets the check return at once when no ``unk_token_id`` occurs in it.

    Returns the words named in the warning (empty when there was no warning).
    """
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    if input_ids is not None and not bool((input_ids == unk_id).any()):
        return []
    named: list[str] = []
    examples: list[str] = []
    for text in texts:
        words = _words(text)
        unknown = unknown_words(tokenizer, text)
        if words and len(unknown) >= min_fraction * len(words):
            examples.append(text)
            named.extend(w for w in unknown if w not in named)
    already = _warned_set(tokenizer)
    new = [w for w in named if w.lower() not in already]
    if not new:
        return []
    already.update(w.lower() for w in new)
    vocab_size = len(tokenizer)
    shown = ", ".join(repr(w) for w in new)
    warnings.warn(
        f"refseg: the model's tokenizer does not know the word(s) {shown} (in {examples[0]!r}); they are "
        f"encoded as {tokenizer.unk_token!r}, so the answer cannot depend on them. This tokenizer has "
        f"{vocab_size} tokens; use a model trained on your kind of sentences.",
        OutOfVocabularyWarning,
        stacklevel=3,
    )
    return new
