"""refseg.validation: the shared input checks used by processors, the pipeline and the CLI."""

import math

import pytest
import torch
from transformers import BertConfig, RobertaConfig

from refseg.validation import (
    check_finite_logits,
    check_image_statistics,
    check_max_length,
    check_probability,
    check_sentences,
    text_position_limit,
)


def test_sentences():
    assert check_sentences("the red circle") == ["the red circle"]
    assert check_sentences(("a", "b")) == ["a", "b"]
    for bad, message in [
        ("", "text is an empty sentence"),
        (["a", "\u3000"], r"text\[1\] is an empty sentence"),  # ideographic space is blank too
        ([], "text is an empty list"),
        (None, "text must be a string or a list of strings, got NoneType"),
        ([b"bytes"], r"text\[0\] must be a string, got bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_sentences(bad)


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b\u200c\u2060",
        "\ufeff",
        " \u200d\t",
        "\x00\x07",
        "\u0301\u0308",
        "\u2028\u00ad",
        "\u3164\u2800\ufe0f",
    ],
)
def test_sentences_of_invisible_characters_are_blank(invisible):
    """Zero-width and other format (Cf) or control characters, and combining marks alone, show nothing."""
    with pytest.raises(ValueError, match="text is an empty sentence .*invisible characters"):
        check_sentences(invisible)


def test_visible_sentences_are_not_blank():
    for text in ("?!", "\u200bred\u200b", "e\u0301", "3", "🐱"):
        assert check_sentences(text) == [text]


def test_probabilities():
    assert check_probability(0, "t") == 0.0 and check_probability(1, "t") == 1.0
    assert check_probability(torch.tensor(0.25), "t") == 0.25
    for bad in (math.nan, math.inf, -1e-9, 1.0000001, True, "0.5", None):
        with pytest.raises(ValueError, match="t must be a"):
            check_probability(bad, "t")


def test_text_position_limit_accounts_for_the_roberta_offset():
    assert text_position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert text_position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert text_position_limit(object()) is None


def test_max_length():
    assert (
        check_max_length(None, 5) is None and check_max_length(5, 5) == 5 and check_max_length(9, None) == 9
    )
    with pytest.raises(ValueError, match="max_length 6 is beyond the 5 token positions of the text encoder"):
        check_max_length(6, 5)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="max_length must be a positive integer"):
            check_max_length(bad, 5)


def test_image_statistics():
    assert check_image_statistics(0.5, [1, 2, 3]) == ([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="image_std must not contain 0"):
        check_image_statistics([0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="image_std must be finite"):
        check_image_statistics([0, 0, 0], [1, math.inf, 1])


def test_finite_logits():
    check_finite_logits(torch.tensor([-1e30, 0.0, 1e30]), "scores")  # saturated but finite: a decision
    with pytest.raises(ValueError, match="the model produced NaN scores"):
        check_finite_logits(torch.tensor([0.0, math.nan]), "scores")
    # an infinite logit is a probability of exactly 0 or 1: a confident answer from a broken model
    with pytest.raises(ValueError, match=r"the model produced \+inf and -inf scores \(2 of 3 values"):
        check_finite_logits(torch.tensor([-math.inf, 0.0, math.inf]), "scores")
    with pytest.raises(ValueError, match="produced -inf scores"):
        check_finite_logits(torch.tensor([-math.inf], dtype=torch.float16), "scores")
