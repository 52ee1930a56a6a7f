"""transformers' switches on every model: ``attn_implementation="sdpa" / "eager"`` and gradient checkpointing."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.modeling_layers import GradientCheckpointingLayer

import refseg  # noqa: F401  (registers the Auto classes)
from refseg import (
    InstAlignConfig,
    InstAlignForReferringSegmentation,
    InstanceVGConfig,
    InstanceVGForReferringSegmentation,
    MetrisConfig,
    MetrisForReferringSegmentation,
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread

SIZE = 64
MODELS = {
    "instalign": (InstAlignConfig, InstAlignForReferringSegmentation),
    "instancevg": (InstanceVGConfig, InstanceVGForReferringSegmentation),
    "metris": (MetrisConfig, MetrisForReferringSegmentation),
    "presence_plurality": (PresencePluralityConfig, PresencePluralityForReferringSegmentation),
}
# refseg's own layers that gradient checkpointing must reach (besides the Swin / BERT / RoBERTa layers)
OWN_LAYERS = {
    "instalign": ("PhraseObjectTransformerBlock", "DeformableEncoderLayer"),
    "instancevg": ("Beit3Layer", "PointPriorDecoderLayer"),
    "metris": ("AttentionMLPLayer",),
    "presence_plurality": ("DeformableEncoderLayer", "TargetQueryCrossAttention"),
}


def tiny_config(name: str) -> PreTrainedConfig:
    """The tiny preset with every dropout at 0 (so that two training passes compute the same function)."""
    config = MODELS[name][0].preset("tiny")
    text = getattr(config, "text_config", None)
    if text is not None:
        text.hidden_dropout_prob = 0.0
        text.attention_probs_dropout_prob = 0.0
    return config


def make_inputs(name: str, batch: int = 2, length: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 90, (batch, length), generator=generator)
    input_ids[:, 0] = 0 if name in ("instalign", "instancevg") else 2
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 2 :] = 0
    return {
        "pixel_values": torch.randn(batch, 3, SIZE, SIZE, generator=generator),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
    }


def make_labels() -> list[torch.Tensor]:
    two = torch.zeros(2, SIZE, SIZE)
    two[0, :20, :20] = 1.0
    two[1, 40:, 40:] = 1.0
    return [two, torch.zeros(0, SIZE, SIZE)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, str]:
    folders = {}
    for name, (_, model_class) in MODELS.items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(name)
        model_class(tiny_config(name)).save_pretrained(folder)
        folders[name] = str(folder)
    return folders


def _attention_configs(model: nn.Module) -> list[PreTrainedConfig]:
    """The configs that attention layers read their implementation from (Swin, BERT, RoBERTa, BEiT-3)."""
    return [
        module.config
        for module in model.modules()
        if "Attention" in type(module).__name__
        and isinstance(getattr(module, "config", None), PreTrainedConfig)
    ]


def _count_sdpa_calls(model: nn.Module, inputs: dict, monkeypatch) -> tuple[object, int]:
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        with torch.no_grad():
            outputs = model(**inputs)
    return outputs, len(calls)


@pytest.mark.parametrize("name", list(MODELS))
def test_sdpa_and_eager_load_record_the_choice_and_agree(name, saved, monkeypatch):
    model_class = MODELS[name][1]
    inputs = make_inputs(name)
    results = {}
    for implementation in ("sdpa", "eager"):
        model = model_class.from_pretrained(saved[name], attn_implementation=implementation).eval()
        assert model.config._attn_implementation == implementation
        for key in model.config.sub_configs:
            sub_config = getattr(model.config, key)
            if sub_config is not None:
                assert sub_config._attn_implementation == implementation, key
        configs = _attention_configs(model)
        assert configs, "no attention layer reads the attention implementation"
        assert {c._attn_implementation for c in configs} == {implementation}
        results[implementation] = _count_sdpa_calls(model, inputs, monkeypatch)
    (sdpa_out, sdpa_calls), (eager_out, eager_calls) = results["sdpa"], results["eager"]
    assert eager_calls < sdpa_calls  # the sub-models' attention left the SDPA kernel
    tensors = {key: value for key, value in sdpa_out.items() if isinstance(value, torch.Tensor)}
    assert "semantic_mask_logits" in tensors
    for key, value in tensors.items():
        torch.testing.assert_close(eager_out[key], value, rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", list(MODELS))
def test_default_is_sdpa_and_set_attn_implementation_reaches_the_sub_models(name, saved):
    model = MODELS[name][1].from_pretrained(saved[name])
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    assert {c._attn_implementation for c in _attention_configs(model)} == {"eager"}


def _gradients(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(3)
    model(**make_inputs(name), mask_labels=make_labels()).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _count_child_calls(model: nn.Module, layer_names: tuple[str, ...]) -> list[int]:
    """Hook the first child of each of refseg's layers: a checkpointed layer runs its children twice."""
    counter = [0]
    for module in model.modules():
        if type(module).__name__ in layer_names:
            child = next(iter(module.children()))
            child.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_checkpointing_gives_the_same_gradients(name):
    torch.manual_seed(0)
    model = MODELS[name][1](tiny_config(name)).train()
    counter = _count_child_calls(model, OWN_LAYERS[name])
    reference = _gradients(model, name)
    plain_calls = counter[0]
    assert plain_calls > 0
    with warnings.catch_warnings():
        # transformers 5 renames it activation_checkpointing_enable
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert {type(m).__name__ for m in layers} >= set(OWN_LAYERS[name])
    assert all(m.gradient_checkpointing for m in layers)
    counter[0] = 0
    checkpointed = _gradients(model, name)
    assert counter[0] == 2 * plain_calls  # every layer was recomputed in the backward pass
    assert checkpointed.keys() == reference.keys()
    for key, grad in reference.items():
        torch.testing.assert_close(checkpointed[key], grad, rtol=1e-5, atol=1e-6, msg=key)
