"""ReLA (Liu, Ding, Jiang, "GRES: Generalized Referring Expression Segmentation", CVPR 2023): the GRES baseline
with region-image and region-language attention, a minimap and a no-target head."""

from .configuration_rela import RelaConfig
from .image_processing_rela import RelaImageProcessor
from .modeling_rela import RelaForReferringSegmentation, RelaModel, RelaOutput, RelaPreTrainedModel
from .processing_rela import RelaProcessor

__all__ = [
    "RelaConfig",
    "RelaForReferringSegmentation",
    "RelaImageProcessor",
    "RelaModel",
    "RelaOutput",
    "RelaPreTrainedModel",
    "RelaProcessor",
]
