"""The converter's BERT tokenizer (``--tokenizer``): bert-base-uncased's, read from a local folder or vocab.txt.

The released models tokenize with ``bert-base-uncased`` (lower-cased WordPiece). The converter runs offline, so
the user points at a copy: a tokenizer folder (``tokenizer.json`` / ``tokenizer_config.json`` / ``vocab.txt``,
e.g. from ``hf download bert-base-uncased``) or the ``vocab.txt`` file itself. Each refusal is one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...error_messages import one_line

__all__ = ["MISSING_TOKENIZER", "check_tokenizer_fits", "load_bert_tokenizer"]

#: what to pass when ``--tokenizer`` is missing
MISSING_TOKENIZER = (
    "converting a ReLA checkpoint needs its text tokenizer: pass --tokenizer with a local copy of "
    "bert-base-uncased's tokenizer (a folder with tokenizer.json or vocab.txt, e.g. from "
    "`hf download bert-base-uncased vocab.txt tokenizer.json tokenizer_config.json --local-dir bert-base-uncased`,"
    " or the vocab.txt file itself)"
)


def _read_vocab(path: Path) -> dict[str, int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {token: index for index, token in enumerate(lines) if token}


def load_bert_tokenizer(path: str | Path) -> Any:
    """The BERT tokenizer at ``path`` (a folder or a ``vocab.txt``), or a one-line error saying why not."""
    from transformers import AutoTokenizer, BertTokenizer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--tokenizer {path}: no such file or folder ({MISSING_TOKENIZER})")
    try:
        if path.is_file():
            tokenizer = BertTokenizer(vocab=_read_vocab(path), do_lower_case=True)
        elif (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        elif (path / "vocab.txt").is_file():
            tokenizer = BertTokenizer.from_pretrained(path, local_files_only=True)
        else:
            raise ValueError("the folder holds no tokenizer.json, tokenizer_config.json or vocab.txt")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"--tokenizer {path} is not a BERT tokenizer: {one_line(error)}") from error
    # BERT's special tokens must be word pieces of the vocabulary, not tokens the tokenizer appended to it
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pieces = backend.get_vocab(with_added_tokens=False) if backend is not None else tokenizer.get_vocab()
    missing = [token for token in ("[CLS]", "[SEP]", "[PAD]") if token not in pieces]
    if missing:
        raise ValueError(
            f"--tokenizer {path} is not a BERT tokenizer: it lacks {', '.join(missing)} (use bert-base-uncased's)"
        )
    return tokenizer


def check_tokenizer_fits(tokenizer: Any, vocab_size: int, path: str | Path) -> None:
    """Refuse a tokenizer whose ids would run past the model's word embedding table (``vocab_size`` rows)."""
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"--tokenizer {path} has {len(tokenizer)} tokens, more than the {vocab_size} rows of the checkpoint's "
            "word embedding table: it is not the tokenizer of this model (use bert-base-uncased's)"
        )
