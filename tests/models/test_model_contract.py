"""The model contract every task model keeps (``docs/pipeline.md``, "Model outputs"): one output class, one
way of refusing unknown ``forward`` arguments, and an inference ``forward`` without host synchronisations."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

import pytest
import torch

import refseg
from refseg import ReferringSegmentationOutput

#: every registered architecture (``refseg.models.architectures()``), so a new model is held to the contract
MODELS = {arch.model_type: (arch.config_class, arch.model_class) for arch in refseg.models.architectures()}
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


def test_unknown_keyword_arguments_are_refused_the_same_way(tiny):
    """One helper, one exception type, one message naming the argument, a close name and the accepted ones."""
    name, model, inputs = tiny
    with pytest.raises(TypeError) as info:
        model(**inputs, labels=[torch.zeros(0, 8, 8)] * 2)
    message = str(info.value)
    owner = type(model).__name__
    assert message.startswith(f"{owner}.forward() got unexpected keyword argument(s) 'labels'"), message
    assert "(did you mean '" in message and "_labels'?)" in message  # mask_labels (box_labels for InstanceVG)
    assert "; it accepts pixel_values, input_ids, attention_mask, " in message
    with pytest.raises(
        TypeError, match=rf"^{owner[: -len('ForReferringSegmentation')]}Model\.forward\(\) got"
    ):
        model.model(**inputs, labels=None)  # the base model refuses them the same way


HOST_SYNCS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


def test_inference_forward_makes_no_host_synchronisation(tiny, monkeypatch):
    """``.item()``, ``bool(tensor)``, ``.tolist()``... in refseg code make the host wait for the accelerator.

    The probe counts those calls made from refseg's own files during a forward without labels. Two are known
    and allowed: BEiT-3 encodes only the columns up to the batch's last valid token (InstanceVG; a size that
    depends on values, for speed); the RoBERTa/BERT encoders of transformers check ``padding_mask.all()``
    themselves (not refseg code, so not counted).
    """
    name, model, inputs = tiny
    calls = []
    package = str(pathlib.Path(refseg.__file__).parent)
    for attribute in HOST_SYNCS:
        original = getattr(torch.Tensor, attribute)

        def probe(self, *args, _original=original, _attribute=attribute, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(package):
                calls.append(f"{_attribute} at {caller.f_code.co_filename}:{caller.f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, attribute, probe)
    with torch.no_grad():
        model(**inputs)
    monkeypatch.undo()
    allowed = [c for c in calls if c.split(" at ")[1].startswith(os.path.join(package, "modeling", "beit3"))]
    assert [c for c in calls if c not in allowed] == [], name
    assert len(allowed) <= (2 if name == "instancevg" else 0)


def test_the_probe_sees_a_host_synchronisation(monkeypatch):
    """The probe above catches ``bool(tensor)`` in refseg code (a test that can fail)."""
    from refseg.modeling.input_checks import check_values

    seen = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: seen.append(1) or original(self))
    check_values(torch.tensor(True), "never raised")  # no host synchronisation
    assert seen == []
    assert bool(torch.tensor(True)) and seen == [1]
    with pytest.raises(ValueError, match="the rule is broken"):
        check_values(torch.tensor(False), "the rule is broken")
