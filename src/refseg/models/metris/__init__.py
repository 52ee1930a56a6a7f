"""METRIS (papers: "METRIS: Multi-Expressions for Transformer-based Referring Image Segmentation")."""

from .configuration_metris import MetrisConfig
from .image_processing_metris import MetrisImageProcessor
from .modeling_metris import MetrisForReferringSegmentation, MetrisModel, MetrisOutput, MetrisPreTrainedModel
from .processing_metris import MetrisProcessor

__all__ = [
    "MetrisConfig",
    "MetrisForReferringSegmentation",
    "MetrisImageProcessor",
    "MetrisOutput",
    "MetrisModel",
    "MetrisPreTrainedModel",
    "MetrisProcessor",
]
