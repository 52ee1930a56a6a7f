"""Out-of-vocabulary sentences: warn once when a sentence has no word, or mostly words the tokenizer does not know.

A word-level tokenizer (such as the bundled demo model's, built on the synthetic grammar's few dozen words)
turns every unknown word into its ``unk_token``: "the cat" becomes "the <unk>", and the model then
answers confidently about nothing in particular. Every processor calls :func:`warn_unknown_words`
after tokenising, so the user learns which words the model never saw. Sub-word tokenizers (RoBERTa's
byte-level BPE, BERT's WordPiece) rarely or never produce ``unk_token`` and so never warn.
"""

from __future__ import annotations

import unicodedata
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

from .validation import is_panic

__all__ = ["MAX_NAMED_WORDS", "OutOfVocabularyWarning", "unknown_words", "warn_unknown_words", "words"]

#: at most this many unknown words are named in one warning ("... and N more")
MAX_NAMED_WORDS = 10
_MAX_SHOWN_CHARS = 60  # a sentence or word longer than this is shortened in the warning

#: words already named in a warning, per tokenizer (so each word is named once)
_WARNED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_WARNED_BY_ID: dict[int, set[str]] = {}


class OutOfVocabularyWarning(UserWarning):
    """A sentence has no word, or is mostly made of words that the model's tokenizer maps to its unknown token."""


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM"  # letters, digits, combining marks


def words(text: str) -> list[str]:
    """Whitespace-separated words without the punctuation and symbols around them.

    A word needs a letter or a digit: punctuation-only and symbol-only tokens (``"?!"``, ``"--"``) are dropped,
    so ``words("?!")`` is empty.
    """
    out = []
    for token in text.split():
        start, end = 0, len(token)
        while start < end and not _is_word_char(token[start]):
            start += 1
        while end > start and not _is_word_char(token[end - 1]):
            end -= 1
        word = token[start:end]
        if any(unicodedata.category(c)[0] in "LN" for c in word):
            out.append(word)
    return out


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` (in order, without repeats) that ``tokenizer`` encodes with its ``unk_token``.

    Empty when the tokenizer has no unknown token (e.g. byte-level BPE).
    """
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    unique = list(dict.fromkeys(words(text)))
    if not unique:
        return []
    try:
        encoded = tokenizer(unique, add_special_tokens=False)["input_ids"]  # one batched call
    except BaseException as err:  # noqa: BLE001 (a Rust panic of the tokenizers library is a BaseException)
        if not is_panic(err):
            raise
        source = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise ValueError(
            f"the tokenizer of {source} panicked on the words of {_shorten(text)!r} "
            f"({' '.join(str(err).split())[:200]}); its tokenizer.json is broken or from another version"
        ) from None
    return [word for word, ids in zip(unique, encoded) if unk_id in ids]


def _warned_set(tokenizer: Any) -> set[str]:
    try:
        return _WARNED.setdefault(tokenizer, set())
    except TypeError:  # not weak-referenceable
        return _WARNED_BY_ID.setdefault(id(tokenizer), set())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 3] + "..."


def _named(items: Sequence[str]) -> str:
    """``'a', 'b' ... and 5 more`` (at most :data:`MAX_NAMED_WORDS` named, each shortened)."""
    shown = ", ".join(repr(_shorten(w)) for w in items[:MAX_NAMED_WORDS])
    more = len(items) - MAX_NAMED_WORDS
    return shown + (f" and {more} more" if more > 0 else "")


def _warn(message: str) -> None:
    """One line, without a source line: the same text in the CLI, the pipeline and a notebook."""
    warnings.warn_explicit(
        message, OutOfVocabularyWarning, filename="refseg", lineno=0, module="refseg.out_of_vocabulary"
    )


def warn_unknown_words(
    tokenizer: Any,
    texts: Sequence[str],
    input_ids: Any = None,
    min_fraction: float = 0.5,
) -> list[str]:
    """Warn (:class:`OutOfVocabularyWarning`) about sentences the model cannot read.

    Two cases, each one warning of one line:

    - a sentence without any word (punctuation or symbols only, such as ``"?!"``), with any tokenizer; once
      per tokenizer and sentence;
    - a sentence of which at least ``min_fraction`` of the words map to the tokenizer's ``unk_token``
      (all of them for a sentence with no known word). The warning names at most :data:`MAX_NAMED_WORDS`
      unknown words ("... and N more") and is given once per tokenizer and word: a word that was already
      named is not named again. ``input_ids`` (the batch the processor just encoded, optional) lets the check
      return at once when no ``unk_token_id`` occurs in it. Tokenizers without an ``unk_token`` (byte-level
      BPE) never produce this case.

    Returns the unknown words of the warning (empty when there was none).
    """
    already = _warned_set(tokenizer)
    wordless = [text for text in dict.fromkeys(texts) if not words(text) and "\0" + text not in already]
    if wordless:
        already.update("\0" + text for text in wordless)
        what = "the sentence" if len(wordless) == 1 else "the sentences"
        _warn(
            f"{what} {_named(wordless)} {'has' if len(wordless) == 1 else 'have'} no word (only punctuation or "
            "symbols); the model's answer cannot be about anything in it."
        )
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    if input_ids is not None and not bool((input_ids == unk_id).any()):
        return []
    named: dict[str, None] = {}
    examples: list[str] = []
    for text in texts:
        sentence_words = words(text)
        unknown = unknown_words(tokenizer, text)
        if sentence_words and len(unknown) >= min_fraction * len(sentence_words):
            examples.append(text)
            named.update(dict.fromkeys(unknown))
    new = [w for w in named if w.lower() not in already]
    if not new:
        return []
    already.update(w.lower() for w in new)
    _warn(
        f"the model's tokenizer does not know the word(s) {_named(new)} (in {_shorten(examples[0])!r}); they "
        f"are encoded as {tokenizer.unk_token!r}, so the answer cannot depend on them. This tokenizer has "
        f"{len(tokenizer)} tokens; use a model trained on your kind of sentences."
    )
    return new
