"""InstanceVG (Dai et al., IEEE TPAMI): instance-aware joint learning for generalized visual grounding."""

from .configuration_instancevg import InstanceVGConfig
from .image_processing_instancevg import InstanceVGImageProcessor
from .modeling_instancevg import (
    InstanceVGForReferringSegmentation,
    InstanceVGModel,
    InstanceVGOutput,
    InstanceVGPreTrainedModel,
)
from .processing_instancevg import InstanceVGProcessor

__all__ = [
    "InstanceVGConfig",
    "InstanceVGForReferringSegmentation",
    "InstanceVGImageProcessor",
    "InstanceVGOutput",
    "InstanceVGModel",
    "InstanceVGPreTrainedModel",
    "InstanceVGProcessor",
]
