"""The architectures. Importing this package registers each with the transformers Auto classes.

After ``import refseg``, ``AutoConfig``, ``AutoModel``, ``AutoModelForImageSegmentation``,
``AutoImageProcessor`` and ``AutoProcessor`` resolve every refseg ``model_type``
(transformers' ``AutoConfig.register`` and friends); registrations are process-local, so they run on import.
"""

from __future__ import annotations

from typing import NamedTuple

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoProcessor,
)

from .instalign import (
    InstAlignConfig,
    InstAlignForReferringSegmentation,
    InstAlignImageProcessor,
    InstAlignOutput,
    InstAlignProcessor,
)
from .instancevg import (
    InstanceVGConfig,
    InstanceVGForReferringSegmentation,
    InstanceVGImageProcessor,
    InstanceVGOutput,
    InstanceVGProcessor,
)
from .metris import (
    MetrisConfig,
    MetrisForReferringSegmentation,
    MetrisImageProcessor,
    MetrisOutput,
    MetrisProcessor,
)
from .presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
    PresencePluralityImageProcessor,
    PresencePluralityOutput,
    PresencePluralityProcessor,
)
from .rela import RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaOutput, RelaProcessor


class Architecture(NamedTuple):
    """The four classes of one registered architecture."""

    config_class: type
    model_class: type
    image_processor_class: type
    processor_class: type

    @property
    def model_type(self) -> str:
        """The architecture's ``model_type`` (e.g. ``"instalign"``)."""
        return self.config_class.model_type


# every refseg architecture; a new one adds one line here (and its public names to ``__all__``)
_ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        InstAlignConfig, InstAlignForReferringSegmentation, InstAlignImageProcessor, InstAlignProcessor
    ),
    Architecture(MetrisConfig, MetrisForReferringSegmentation, MetrisImageProcessor, MetrisProcessor),
    Architecture(
        PresencePluralityConfig,
        PresencePluralityForReferringSegmentation,
        PresencePluralityImageProcessor,
        PresencePluralityProcessor,
    ),
    Architecture(
        InstanceVGConfig, InstanceVGForReferringSegmentation, InstanceVGImageProcessor, InstanceVGProcessor
    ),
    Architecture(RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaProcessor),
)


def _register(config_cls, model_cls, image_processor_cls, processor_cls) -> None:
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    AutoModel.register(config_cls, model_cls, exist_ok=True)
    AutoModelForImageSegmentation.register(config_cls, model_cls, exist_ok=True)
    # one torch/PIL implementation serves both backend names (no torchvision needed)
    AutoImageProcessor.register(
        config_cls,
        image_processor_classes={"torchvision": image_processor_cls, "pil": image_processor_cls},
        exist_ok=True,
    )
    AutoProcessor.register(config_cls, processor_cls, exist_ok=True)


for _arch in _ARCHITECTURES:
    _register(*_arch)


def architectures() -> tuple[Architecture, ...]:
    """Every registered refseg architecture, in registration order (the registry the tests iterate)."""
    return _ARCHITECTURES


def model_types() -> list[str]:
    """The ``model_type`` of every registered architecture, e.g. ``["instalign", "metris", ...]``."""
    return [arch.model_type for arch in _ARCHITECTURES]


def architecture(model_type: str) -> Architecture:
    """The registered :class:`Architecture` of ``model_type``; ``ValueError`` naming the known ones."""
    for arch in _ARCHITECTURES:
        if arch.model_type == model_type:
            return arch
    raise ValueError(f"unknown refseg model_type {model_type!r}; known: {model_types()}")


def processor_classes(model_type: str) -> tuple[type, type]:
    """``(image processor class, processor class)`` of a refseg ``model_type``, e.g. ``"instalign"``."""
    arch = architecture(model_type)
    return arch.image_processor_class, arch.processor_class


# the registry's own names: ``refseg/__init__.py`` re-exports every other name of ``__all__``
REGISTRY_NAMES = ("Architecture", "architecture", "architectures", "model_types", "processor_classes")

# A new architecture adds its classes to _ARCHITECTURES and its public names here: ``refseg/__init__.py``
# re-exports them as ``from refseg import XConfig, ...``.
__all__ = [
    *REGISTRY_NAMES,
    "InstAlignConfig",
    "InstAlignForReferringSegmentation",
    "InstAlignImageProcessor",
    "InstAlignOutput",
    "InstAlignProcessor",
    "InstanceVGConfig",
    "InstanceVGForReferringSegmentation",
    "InstanceVGImageProcessor",
    "InstanceVGOutput",
    "InstanceVGProcessor",
    "MetrisConfig",
    "MetrisForReferringSegmentation",
    "MetrisImageProcessor",
    "MetrisOutput",
    "MetrisProcessor",
    "PresencePluralityConfig",
    "PresencePluralityForReferringSegmentation",
    "PresencePluralityImageProcessor",
    "PresencePluralityOutput",
    "PresencePluralityProcessor",
    "RelaConfig",
    "RelaForReferringSegmentation",
    "RelaImageProcessor",
    "RelaOutput",
    "RelaProcessor",
]
