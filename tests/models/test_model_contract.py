"""The model contract every task model keeps (``docs/pipeline.md``, "Model outputs"): one output class, one
way of refusing unknown ``forward`` arguments, and an inference ``forward`` without host synchronisations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import refseg
from refseg import (
    InstAlignConfig,
    InstAlignForReferringSegmentation,
    InstanceVGConfig,
    InstanceVGForReferringSegmentation,
    MetrisConfig,
    MetrisForReferringSegmentation,
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
    ReferringSegmentationOutput,
)

MODELS = {
    "instalign": (InstAlignConfig, InstAlignForReferringSegmentation),
    "instancevg": (InstanceVGConfig, InstanceVGForReferringSegmentation),
    "metris": (MetrisConfig, MetrisForReferringSegmentation),
    "presence_plurality": (PresencePluralityConfig, PresencePluralityForReferringSegmentation),
}
SHARED_FIELDS = [f.name for f in dataclasses.fields(ReferringSegmentationOutput)]


@pytest.fixture(scope="module", params=sorted(MODELS))
def tiny(request):
    """``(model_type, tiny model in eval mode, inputs of batch 2 with a padded second sentence)``."""
    config_class, model_class = MODELS[request.param]
    torch.manual_seed(0)
    model = model_class(config_class.preset("tiny")).eval()
    size = model.config.image_size
    text_config = getattr(model.config, "text_config", None) or model.config.encoder_config
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, text_config.vocab_size, (2, 6), generator=generator)
    input_ids[:, 0] = 0  # the [CLS] / <s> position, valid in every sentence
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -2:] = 0
    inputs = {
        "pixel_values": torch.randn(2, 3, size, size, generator=generator),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
    }
    return request.param, model, inputs


def test_every_output_is_a_referring_segmentation_output(tiny):
    name, model, inputs = tiny
    with torch.no_grad():
        outputs = model(**inputs)
    assert isinstance(outputs, ReferringSegmentationOutput), name
    assert type(outputs).__name__ in refseg.__all__  # each model's subclass is a public name
    own = [f.name for f in dataclasses.fields(outputs)]
    assert own[: len(SHARED_FIELDS)] == SHARED_FIELDS  # the shared fields first, in the base class's order
    assert outputs.semantic_mask_logits.shape[0] == 2 and outputs.semantic_mask_logits.dim() == 3
    assert outputs.no_target_logits.shape == (2,)
    if outputs.pred_masks is not None:
        assert outputs.pred_masks.shape[:2] == outputs.pred_scores.shape
    assert outputs.loss is None and outputs.loss_dict is None  # no labels, no loss


def test_return_dict_false_gives_the_fields_in_the_output_order(tiny):
    name, model, inputs = tiny
    with torch.no_grad():
        outputs = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    expected = outputs.to_tuple()
    assert len(as_tuple) == len(expected), name
    torch.testing.assert_close(as_tuple[0], outputs.semantic_mask_logits)  # loss / loss_dict are None
    torch.testing.assert_close(as_tuple[1], outputs.no_target_logits)
