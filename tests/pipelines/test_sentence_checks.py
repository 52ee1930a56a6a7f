"""Sentences the model cannot read: refused when invisible, one clean warning line otherwise (pipeline and CLI)."""

from __future__ import annotations

import warnings

import PIL.Image
import pytest
from transformers import pipeline

import refseg  # noqa: F401  (registers the task)
from refseg.out_of_vocabulary import OutOfVocabularyWarning
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign

ZERO_WIDTH = "\u200b\u200c\u2060"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_sentences")))


@pytest.fixture
def shown(monkeypatch) -> list[str]:
    """What Python prints on stderr for each warning (``warnings.showwarning``'s default format)."""
    lines: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        lines.append(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    return lines


def test_zero_width_sentences_are_refused_by_the_pipeline(model_dir: str) -> None:
    segmenter = pipeline("referring-segmentation", model=model_dir)
    with pytest.raises(ValueError, match="is an empty sentence"):
        segmenter(PIL.Image.new("RGB", (8, 8)), ZERO_WIDTH)


def test_zero_width_sentences_are_one_line_cli_errors(model_dir: str, tmp_path, capsys) -> None:
    image = tmp_path / "i.png"
    PIL.Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--image", str(image), "--model", model_dir, "--text", ZERO_WIDTH]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--text[0] is an empty sentence" in err


@pytest.mark.parametrize(
    "sentence, expected",
    [("?!", "has no word"), ("the zebra giraffe", "'zebra', 'giraffe'")],
)
def test_pipeline_and_cli_show_the_same_single_line(
    model_dir: str, tmp_path, capsys, shown: list[str], sentence: str, expected: str
) -> None:
    image = tmp_path / "i.png"
    PIL.Image.new("RGB", (8, 8)).save(image)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        pipeline("referring-segmentation", model=model_dir)(str(image), sentence)
        assert main(["predict", "--image", str(image), "--model", model_dir, "--text", sentence]) == 0
    ours = [line for line in shown if OutOfVocabularyWarning.__name__ in line]
    assert len(ours) == 2 and ours[0] == ours[1], ours  # a new tokenizer each time: warned once by each
    assert ours[0].count("\n") == 1 and expected in ours[0]
