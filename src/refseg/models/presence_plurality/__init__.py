"""Presence & plurality (Kim, Lee, Kwak, AAAI 2026): target query with presence and plurality heads for GRES."""

from .configuration_presence_plurality import PresencePluralityConfig
from .convert_rela import load_rela_checkpoint
from .image_processing_presence_plurality import PresencePluralityImageProcessor
from .modeling_presence_plurality import (
    PresencePluralityForReferringSegmentation,
    PresencePluralityModel,
    PresencePluralityOutput,
    PresencePluralityPreTrainedModel,
)
from .processing_presence_plurality import PresencePluralityProcessor

__all__ = [
    "PresencePluralityConfig",
    "PresencePluralityForReferringSegmentation",
    "PresencePluralityImageProcessor",
    "PresencePluralityOutput",
    "PresencePluralityModel",
    "PresencePluralityPreTrainedModel",
    "PresencePluralityProcessor",
    "load_rela_checkpoint",
]
