"""Exporting refseg models: ONNX (``refseg export onnx``) and ``torch.export``. See ``docs/export.md``."""

from .onnx import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    ReferringSegmentationExportWrapper,
    compare_with_onnxruntime,
    dynamic_shapes,
    example_inputs,
    export_onnx,
    load_for_export,
    max_sequence_length,
    torch_export,
)

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "ReferringSegmentationExportWrapper",
    "compare_with_onnxruntime",
    "dynamic_shapes",
    "example_inputs",
    "export_onnx",
    "load_for_export",
    "max_sequence_length",
    "torch_export",
]
