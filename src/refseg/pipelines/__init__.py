"""Pipelines. Importing this package registers the ``referring-segmentation`` task."""

from __future__ import annotations

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .referring_segmentation import ReferringSegmentationPipeline

PIPELINE_REGISTRY.register_pipeline(
    "referring-segmentation",
    pipeline_class=ReferringSegmentationPipeline,
    pt_model=AutoModel,
    type="multimodal",
)

__all__ = ["ReferringSegmentationPipeline"]
