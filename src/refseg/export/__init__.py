"""Exporting refseg models: ONNX (``refseg export onnx``) and ``torch.export``. See ``docs/export.md``."""

from .onnx import (
    CONTRACT_OUTPUTS,
    INPUT_NAMES,
    ReferringSegmentationExportWrapper,
    compare_with_onnxruntime,
    dynamic_shapes,
    example_inputs,
    export_onnx,
    load_for_export,
    max_sequence_length,
    output_names,
    torch_export,
)

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
