"""Pipelines. Importing this package registers the ``referring-segmentation`` task.

The task loads its model through ``ReferringSegmentationModelLoader``: a folder that is not a refseg
model, unreadable weights or a checkpoint with missing weights are refused when the pipeline is built.
"""

from __future__ import annotations

from transformers.pipelines import PIPELINE_REGISTRY

from .loading import (
    IncompleteCheckpointError,
    ModelLoadingError,
    ReferringSegmentationModelLoader,
    load_referring_segmentation_model,
    load_referring_segmentation_pipeline,
)
from .referring_segmentation import ReferringSegmentationPipeline

PIPELINE_REGISTRY.register_pipeline(
    "referring-segmentation",
    pipeline_class=ReferringSegmentationPipeline,
    pt_model=ReferringSegmentationModelLoader,
    type="multimodal",
)

__all__ = [
    "IncompleteCheckpointError",
    "ModelLoadingError",
    "ReferringSegmentationModelLoader",
    "ReferringSegmentationPipeline",
    "load_referring_segmentation_model",
    "load_referring_segmentation_pipeline",
]
