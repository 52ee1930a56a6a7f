"""Out-of-vocabulary warnings: unknown words are found, named once, and only for mostly-unknown sentences."""

import warnings

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from refseg.data import synthetic_tokenizer
from refseg.models.instalign import InstAlignImageProcessor, InstAlignProcessor
from refseg.out_of_vocabulary import OutOfVocabularyWarning, unknown_words, warn_unknown_words
from tests.processing_helpers import tiny_tokenizer


def test_unknown_words_in_order_without_repeats_and_punctuation():
    tok = tiny_tokenizer(model_max_length=32)
    assert unknown_words(tok, "the cat, the mat and the cat.") == ["cat", "mat"]
    assert unknown_words(tok, "the red circle") == []
    assert unknown_words(tok, " , . ") == []


def test_warns_for_a_mostly_unknown_sentence_naming_the_words():
    tok = tiny_tokenizer(model_max_length=32)
    with pytest.warns(OutOfVocabularyWarning, match=r"'cat'.*'the cat'.*<unk>"):
        assert warn_unknown_words(tok, ["the red circle", "the cat"]) == ["cat"]


def test_half_unknown_warns_less_than_half_does_not():
    tok = tiny_tokenizer(model_max_length=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unknown_words(tok, ["the small red dog"]) == []  # 1 of 4 words unknown
    with pytest.warns(OutOfVocabularyWarning):
        assert warn_unknown_words(tok, ["the red dog cat"]) == ["dog", "cat"]  # 2 of 4
    with pytest.warns(OutOfVocabularyWarning):  # a stricter threshold for a fresh tokenizer
        assert warn_unknown_words(tiny_tokenizer(32), ["the small red dog"], min_fraction=0.25) == ["dog"]


def test_each_word_is_named_once_per_tokenizer():
    tok = tiny_tokenizer(model_max_length=32)
    with pytest.warns(OutOfVocabularyWarning):
        warn_unknown_words(tok, ["a cat"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unknown_words(tok, ["the Cat"]) == []  # already named (case-insensitive)
    with pytest.warns(OutOfVocabularyWarning, match="'dog'") as record:
        assert warn_unknown_words(tok, ["the cat dog"]) == ["dog"]
    assert "'cat'" not in str(record[0].message)
    with pytest.warns(OutOfVocabularyWarning):  # another tokenizer has its own memory
        warn_unknown_words(tiny_tokenizer(32), ["a cat"])


def test_input_ids_without_unk_skip_the_word_check():
    tok = tiny_tokenizer(model_max_length=32)
    ids = tok(["the cat"], return_tensors="pt")["input_ids"]
    clean = torch.where(ids == tok.unk_token_id, torch.full_like(ids, 5), ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unknown_words(tok, ["the cat"], clean) == []
    with pytest.warns(OutOfVocabularyWarning):
        assert warn_unknown_words(tok, ["the cat"], ids) == ["cat"]


def test_tokenizer_without_unknown_token_never_warns():
    vocab = {"<pad>": 0, "the": 1, "cat": 2}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    assert tok.unk_token_id is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unknown_words(tok, ["completely unheard words"]) == []
        assert unknown_words(tok, "completely unheard words") == []


def test_processor_warns_once_for_the_cat():
    processor = InstAlignProcessor(InstAlignImageProcessor(size=32), synthetic_tokenizer())
    image = torch.zeros(3, 32, 32)
    with pytest.warns(OutOfVocabularyWarning, match="'cat'"):
        processor(images=image, text="the cat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        processor(images=image, text="the cat")  # named already
        processor(images=image, text="the red circle")  # all known


def _one_line_display(record) -> str:
    """The warning as Python shows it on stderr (with the source line, if it had one)."""
    return warnings.formatwarning(
        record.message, record.category, record.filename, record.lineno, record.line
    )


def test_a_long_unknown_sentence_names_at_most_ten_words():
    tok = tiny_tokenizer(model_max_length=32)
    sentence = " ".join(f"zz{i}" for i in range(5000))  # 34,000 characters
    with pytest.warns(OutOfVocabularyWarning) as record:
        named = warn_unknown_words(tok, [sentence])
    assert len(named) == 5000
    message = str(record[0].message)
    assert len(message) < 600 and "'zz9'" in message and "'zz10'" not in message
    assert "and 4990 more" in message


def test_punctuation_only_sentences_warn_with_any_tokenizer():
    vocab = {"<pad>": 0, "the": 1}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    no_unk = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    for tok in (tiny_tokenizer(32), no_unk):
        with pytest.warns(OutOfVocabularyWarning, match=r"the sentence '\?!' has no word"):
            warn_unknown_words(tok, ["the", "?!"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_unknown_words(tok, ["?!"])  # named once per tokenizer


def test_the_warning_is_one_line_without_a_source_line():
    processor = InstAlignProcessor(InstAlignImageProcessor(size=32), synthetic_tokenizer())
    with pytest.warns(OutOfVocabularyWarning) as record:
        processor(images=torch.zeros(3, 32, 32), text="the zebra")
    shown = _one_line_display(record[0])
    assert shown.count("\n") == 1 and "'zebra'" in shown and "processor(" not in shown


def test_a_tokenizer_panic_while_looking_up_words_is_a_value_error():
    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    class Panicking:
        unk_token_id, name_or_path = 3, "broken-tokenizer"

        def __call__(self, *args, **kwargs):
            raise PanicException("NormalizedString bad split")

    with pytest.raises(ValueError, match="the tokenizer of broken-tokenizer panicked .*bad split"):
        unknown_words(Panicking(), "the zebra")
