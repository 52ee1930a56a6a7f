"""Export a refseg model to ONNX (image + text in, the shared model outputs out).

The graph takes ``pixel_values (B, 3, H, W)`` float32, ``input_ids (B, L)`` and ``attention_mask (B, L)``
int64, with ``B`` and ``L`` dynamic and ``H, W`` the processor's fixed input size, and returns the fields of
the output contract (:class:`~refseg.modeling.outputs.ReferringSegmentationOutput`) that the model fills, in
the contract's order (:func:`output_names`): ``semantic_mask_logits``, ``no_target_logits``, then
``pred_masks``, ``pred_scores`` and ``pred_boxes`` where the model has them (METRIS and ReLA have none of
those three). ``dict(zip(names, outputs))`` is what ``post_process_referring_segmentation`` takes.
Multi-scale deformable attention is traced through its
pure-PyTorch reference (:func:`refseg.kernels.use_reference_implementation`), whose bilinear
``grid_sample`` is the ONNX ``GridSample`` operator. See ``docs/export.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..kernels import use_reference_implementation

__all__ = [
    "CONTRACT_OUTPUTS",
    "INPUT_NAMES",
    "ReferringSegmentationExportWrapper",
    "compare_with_onnxruntime",
    "dynamic_shapes",
    "example_inputs",
    "export_onnx",
    "load_for_export",
    "max_sequence_length",
    "output_names",
    "torch_export",
]

INPUT_NAMES = ("pixel_values", "input_ids", "attention_mask")
#: the fields of the output contract a graph can return, in ReferringSegmentationOutput's order
CONTRACT_OUTPUTS = ("semantic_mask_logits", "no_target_logits", "pred_masks", "pred_scores", "pred_boxes")


def _contract_outputs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> Any:
    pixel_values, input_ids, attention_mask = inputs
    return model(
        pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, return_dict=True
    )


def output_names(model: nn.Module, inputs: Sequence[torch.Tensor] | None = None) -> tuple[str, ...]:
    """The contract fields ``model`` fills (not ``None``), in :data:`CONTRACT_OUTPUTS` order: the outputs of
    its exported graph. Found by one eager forward on ``inputs`` (default: :func:`example_inputs` of batch 1)."""
    return _filled_contract_fields(model, inputs)


def _filled_contract_fields(model: nn.Module, inputs: Sequence[torch.Tensor] | None) -> tuple[str, ...]:
    if inputs is None:
        inputs = example_inputs(model, batch=1)
    with torch.no_grad():
        outputs = _contract_outputs(model, inputs)
    return tuple(name for name in CONTRACT_OUTPUTS if getattr(outputs, name) is not None)


class ReferringSegmentationExportWrapper(nn.Module):
    """``(pixel_values, input_ids, attention_mask) -> tuple of the contract fields the model fills`` (their names:
    :attr:`output_names`, see :func:`output_names`): a refseg task model with positional inputs and plain
    tensors out."""

    def __init__(self, model: nn.Module, output_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.model = model
        names = tuple(output_names) if output_names is not None else _filled_contract_fields(model, None)
        unknown = [name for name in names if name not in CONTRACT_OUTPUTS]
        if unknown or not names:
            raise ValueError(f"output_names must be fields among {CONTRACT_OUTPUTS}, got {names}")
        self.output_names = names

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        outputs = _contract_outputs(self.model, (pixel_values, input_ids, attention_mask))
        return tuple(getattr(outputs, name) for name in self.output_names)


def load_for_export(model: str | Path | nn.Module) -> tuple[nn.Module, Any]:
    """``(model in eval mode on CPU, processor or None)`` from a folder / Hub id, or a model object."""
    if isinstance(model, nn.Module):
        return model.eval(), None
    from transformers import AutoModelForImageSegmentation, AutoProcessor

    import refseg  # noqa: F401  (registers the Auto classes)

    loaded = AutoModelForImageSegmentation.from_pretrained(str(model))
    processor = AutoProcessor.from_pretrained(str(model))
    return loaded.eval().to("cpu"), processor


def example_inputs(
    model: nn.Module,
    processor: Any = None,
    batch: int = 2,
    sentence: str = "the red circle and the blue square",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracing/checking inputs: random images at the model's input size and tokenised sentences.

    The second sentence is one word shorter, so the padding path of ``attention_mask`` is exercised.
    """
    config = model.config
    size = getattr(config, "image_size", None) or getattr(config.backbone_config, "image_size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch, 3, height, width, generator=generator)
    words = sentence.split()
    texts = [" ".join(words[: max(1, len(words) - (k % 2))]) for k in range(batch)]
    if processor is not None:
        tokens = processor.tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
        input_ids, attention_mask = tokens["input_ids"], tokens["attention_mask"]
    else:
        # InstanceVG's joint BEiT-3 encoder holds the vocabulary
        text_config = getattr(config, "text_config", None) or config.encoder_config
        vocab = text_config.vocab_size
        input_ids = torch.randint(4, vocab, (batch, len(words) + 2), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[1::2, -1] = 0
    return pixel_values, input_ids.long(), attention_mask.long()


def max_sequence_length(model: nn.Module) -> int:
    """The most tokens the model's text encoder embeds: the upper bound of the dynamic sequence axis."""
    from ..validation import text_position_limit

    config = model.config
    encoder = getattr(config, "encoder_config", None)  # InstanceVG's joint BEiT-3 encoder
    if encoder is not None and getattr(encoder, "max_text_length", None) is not None:
        return int(encoder.max_text_length)
    limit = text_position_limit(config.text_config)
    return 512 if limit is None else int(limit)


def dynamic_shapes(model: nn.Module) -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` for ``torch.export`` / ``torch.onnx.export`` of the wrapped ``model``: batch 1 to 64
    and sequence length 3 to :func:`max_sequence_length`; the image size is fixed.

    A sentence is at least one token between the tokenizer's two special tokens (blank sentences are refused
    by the processors), and InstanceVG's traced text path specialises on lengths below 3."""
    batch = torch.export.Dim("batch", min=1, max=64)  # im2col_step: batch % min(64, batch) == 0
    length = torch.export.Dim("sequence", min=3, max=max_sequence_length(model))
    return {
        "pixel_values": {0: batch},
        "input_ids": {0: batch, 1: length},
        "attention_mask": {0: batch, 1: length},
    }


def torch_export(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic: bool = True
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of the wrapped model. The compiled deformable-attention op stays one
    opaque node (its fake kernel gives the shapes); batch and sequence length are dynamic when ``dynamic``."""
    wrapper = ReferringSegmentationExportWrapper(model, output_names(model, inputs)).eval()
    return torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes(model) if dynamic else None)


def export_onnx(
    model: str | Path | nn.Module,
    output: str | Path,
    opset: int = 18,
    dynamic: bool = True,
    inputs: tuple[torch.Tensor, ...] | None = None,
) -> Path:
    """Write ``model`` (folder, Hub id or model object) as ONNX to ``output``; returns the path.

    Traces with the deformable attention forced onto its reference (ONNX ``GridSample``); batch and
    sequence length are dynamic axes when ``dynamic``. Weights are stored inside the file.
    """
    module, processor = load_for_export(model)
    if inputs is None:
        inputs = example_inputs(module, processor)
    wrapper = ReferringSegmentationExportWrapper(module, output_names(module, inputs)).eval()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with use_reference_implementation(), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            inputs,
            input_names=list(INPUT_NAMES),
            output_names=list(wrapper.output_names),
            dynamic_shapes=dynamic_shapes(module) if dynamic else None,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(output), external_data=False)
    return output


def compare_with_onnxruntime(
    model: nn.Module, onnx_path: str | Path, inputs: tuple[torch.Tensor, ...], threads: int | None = None
) -> dict[str, float]:
    """Max absolute difference, per output, between PyTorch (compiled op where available) and onnxruntime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
    ort_outputs = session.run(names, feeds)
    with torch.no_grad():
        torch_outputs = ReferringSegmentationExportWrapper(model, names).eval()(*inputs)
    return {
        name: float((torch.from_numpy(o) - t).abs().max())
        for name, o, t in zip(names, ort_outputs, torch_outputs)
    }
