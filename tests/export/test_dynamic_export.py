"""``torch.export`` with dynamic batch and sequence axes: the exported program runs at other batch sizes and
sentence lengths and gives eager PyTorch's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import refseg.models
from refseg import (
    InstanceVGConfig,
    InstanceVGForReferringSegmentation,
    MetrisConfig,
    MetrisForReferringSegmentation,
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.export import (
    CONTRACT_OUTPUTS,
    ReferringSegmentationExportWrapper,
    dynamic_shapes,
    example_inputs,
    load_for_export,
    max_sequence_length,
    output_names,
    torch_export,
)
from tests.processing_helpers import save_tiny_instalign

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

SHAPES = [(1, 4), (3, 4), (1, 9), (3, 9)]  # (batch, sequence length): two of each, none the tracing one


def _inputs(model: nn.Module, batch: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random images and token ids; the last sentence is padded (two tokens of padding)."""
    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    text_config = getattr(model.config, "text_config", None) or model.config.encoder_config
    vocab = text_config.vocab_size
    pixel_values = torch.randn(batch, 3, size, size, generator=generator)
    input_ids = torch.randint(4, vocab, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 2 :] = 0
    return pixel_values, input_ids, attention_mask


def _check_program(program: torch.export.ExportedProgram, eager: nn.Module) -> None:
    module = program.module()
    for seed, (batch, length) in enumerate(SHAPES):
        inputs = _inputs(eager.model if hasattr(eager, "model") else eager, batch, length, seed)
        with torch.no_grad():
            expected = eager(*inputs)
            got = module(*inputs)
        for e, g in zip(expected, got):
            assert g.shape == e.shape and g.shape[0] == batch
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_instalign_dynamic_torch_export_runs_at_other_batches_and_lengths(tmp_path):
    """The docs/export.md example: ``torch_export(model, example_inputs(...), dynamic=True)``."""
    model, processor = load_for_export(save_tiny_instalign(tmp_path))
    program = torch_export(model, example_inputs(model, processor), dynamic=True)
    _check_program(program, ReferringSegmentationExportWrapper(model).eval())


def test_presence_plurality_dynamic_torch_export():
    torch.manual_seed(0)
    model = PresencePluralityForReferringSegmentation(PresencePluralityConfig.preset("tiny")).eval()
    program = torch_export(model, _inputs(model, 2, 7, seed=10), dynamic=True)
    _check_program(program, ReferringSegmentationExportWrapper(model).eval())


def test_instancevg_dynamic_torch_export():
    """BEiT-3 encodes every text column while traced, and the text filter ranks the whole batch at once."""
    torch.manual_seed(0)
    model = InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny")).eval()
    program = torch_export(model, _inputs(model, 2, 7, seed=10), dynamic=True)
    _check_program(program, ReferringSegmentationExportWrapper(model).eval())


def test_metris_dynamic_torch_export():
    """METRIS has no instance queries: its graph returns only the merged-mask and no-target logits."""
    torch.manual_seed(0)
    model = MetrisForReferringSegmentation(MetrisConfig.preset("tiny")).eval()
    inputs = _inputs(model, 2, 7, seed=10)
    inputs[1][:, 0] = 2  # METRIS reads [CLS] first
    assert output_names(model, inputs) == ("semantic_mask_logits", "no_target_logits")
    program = torch_export(model, inputs, dynamic=True)
    _check_program(program, ReferringSegmentationExportWrapper(model).eval())


#: the contract fields each tiny model fills, in the contract's order (docs/export.md)
FILLED = {
    "instalign": ("semantic_mask_logits", "no_target_logits", "pred_masks", "pred_scores"),
    "instancevg": ("semantic_mask_logits", "no_target_logits", "pred_masks", "pred_scores", "pred_boxes"),
    "metris": ("semantic_mask_logits", "no_target_logits"),
    "presence_plurality": ("semantic_mask_logits", "no_target_logits", "pred_masks", "pred_scores"),
    "rela": ("semantic_mask_logits", "no_target_logits"),
}


@pytest.mark.parametrize("model_type", sorted(FILLED))
def test_each_model_exports_the_contract_fields_it_fills(model_type):
    """The graph returns the contract fields the model fills (never a ``None``), in the contract's order."""
    config_class, model_class, _, _ = refseg.models.architecture(model_type)
    torch.manual_seed(0)
    model = model_class(config_class.preset("tiny")).eval()
    wrapper = ReferringSegmentationExportWrapper(model).eval()
    assert wrapper.output_names == FILLED[model_type]
    assert list(wrapper.output_names) == [name for name in CONTRACT_OUTPUTS if name in wrapper.output_names]
    with torch.no_grad():
        values = wrapper(*example_inputs(model, batch=2))
    assert len(values) == len(FILLED[model_type]) and all(v.shape[0] == 2 for v in values)
    with pytest.raises(ValueError, match="output_names must be fields among"):
        ReferringSegmentationExportWrapper(model, ["logits"])


def test_sequence_axis_is_bounded_by_the_text_encoder(tmp_path):
    model, processor = load_for_export(save_tiny_instalign(tmp_path))
    limit = max_sequence_length(model)
    assert (
        limit == model.config.text_config.max_position_embeddings - model.config.text_config.pad_token_id - 1
    )
    assert dynamic_shapes(model)["input_ids"][1].max == limit
