"""``torch.export`` with dynamic batch and sequence axes: the exported program runs at other batch sizes and
sentence lengths and gives eager PyTorch's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refseg import (
    InstanceVGConfig,
    InstanceVGForReferringSegmentation,
    MetrisConfig,
    MetrisForReferringSegmentation,
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.export import (
    ReferringSegmentationExportWrapper,
    dynamic_shapes,
    example_inputs,
    load_for_export,
    max_sequence_length,
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


class _MetrisOutputs(nn.Module):
    """METRIS has no instance queries: export its merged-mask and no-target logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
        return out.semantic_mask_logits, out.no_target_logits


def test_metris_dynamic_torch_export():
    torch.manual_seed(0)
    model = MetrisForReferringSegmentation(MetrisConfig.preset("tiny")).eval()
    wrapper = _MetrisOutputs(model).eval()
    inputs = _inputs(model, 2, 7, seed=10)
    inputs[1][:, 0] = 2  # METRIS reads [CLS] first
    program = torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes(model))
    _check_program(program, wrapper)


def test_sequence_axis_is_bounded_by_the_text_encoder(tmp_path):
    model, processor = load_for_export(save_tiny_instalign(tmp_path))
    limit = max_sequence_length(model)
    assert (
        limit == model.config.text_config.max_position_embeddings - model.config.text_config.pad_token_id - 1
    )
    assert dynamic_shapes(model)["input_ids"][1].max == limit
