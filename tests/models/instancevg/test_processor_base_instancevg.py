"""InstanceVGProcessor on the shared processor base: the released code's cleaning, the shared validation and
the out-of-vocabulary warning."""

import warnings

import pytest
import torch

from refseg.models.instancevg import InstanceVGImageProcessor, InstanceVGProcessor
from refseg.out_of_vocabulary import OutOfVocabularyWarning
from refseg.processing_utils import ReferringSegmentationProcessorBase


@pytest.fixture
def processor(tiny_tokenizer):
    return InstanceVGProcessor(InstanceVGImageProcessor(size=32), tiny_tokenizer)


def test_is_a_referring_segmentation_processor(processor):
    assert isinstance(processor, ReferringSegmentationProcessorBase)
    assert processor.model_input_names == ["pixel_values", "input_ids", "attention_mask"]


def test_sentences_are_cleaned_before_tokenization(processor, tiny_tokenizer):
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    out = processor(images=image, text="The RED-circle, (left)!")
    expected = tiny_tokenizer(["the red circle left"], return_tensors="pt")["input_ids"]
    assert torch.equal(out["input_ids"], expected)
    assert out["attention_mask"].dtype == torch.long and out["attention_mask"].all()


def test_shared_validation_applies(processor):
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    with pytest.raises(ValueError, match="text is an empty list"):
        processor(images=[image], text=[])
    with pytest.raises(ValueError, match=r"text\[1\] is an empty sentence"):
        processor(images=[image, image], text=["a dog", "  "])
    with pytest.raises(ValueError, match="max_length 13 is beyond the 12 token positions"):
        processor(images=image, text="a dog", max_length=13)
    with pytest.raises(ValueError, match="empty after cleaning"):
        processor(images=image, text="?!")


def test_mostly_unknown_sentences_warn_once(processor):
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    with pytest.warns(OutOfVocabularyWarning, match="'ζωή'"):
        processor(images=image, text="ζωή dog")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        processor(images=image, text="the red dog")  # every word known: silent
