"""InstAlign (Nguyen, Le, Samaras, Ryoo): instance-aware alignment for generalized referring segmentation."""

from .configuration_instalign import InstAlignConfig
from .image_processing_instalign import InstAlignImageProcessor
from .modeling_instalign import InstAlignForReferringSegmentation, InstAlignOutput, InstAlignPreTrainedModel
from .processing_instalign import InstAlignProcessor

__all__ = [
    "InstAlignConfig",
    "InstAlignForReferringSegmentation",
    "InstAlignImageProcessor",
    "InstAlignOutput",
    "InstAlignPreTrainedModel",
    "InstAlignProcessor",
]
