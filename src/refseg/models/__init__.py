"""The architectures. Importing this package registers each with the transformers Auto classes.

After ``import refseg``, ``AutoConfig``, ``AutoModel``, ``AutoModelForImageSegmentation``,
``AutoImageProcessor`` and ``AutoProcessor`` resolve every refseg ``model_type``
(transformers' ``AutoConfig.register`` and friends); registrations are process-local, so they run on import.
"""

from __future__ import annotations

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
from .rela import RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaProcessor

# (config class, task model class, image processor class, processor class) per architecture
_ARCHITECTURES = [
    (InstAlignConfig, InstAlignForReferringSegmentation, InstAlignImageProcessor, InstAlignProcessor),
    (MetrisConfig, MetrisForReferringSegmentation, MetrisImageProcessor, MetrisProcessor),
    (
        PresencePluralityConfig,
        PresencePluralityForReferringSegmentation,
        PresencePluralityImageProcessor,
        PresencePluralityProcessor,
    ),
    (InstanceVGConfig, InstanceVGForReferringSegmentation, InstanceVGImageProcessor, InstanceVGProcessor),
    (RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaProcessor),
]


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


def processor_classes(model_type: str) -> tuple[type, type]:
    """``(image processor class, processor class)`` of a refseg ``model_type``, e.g. ``"instalign"``."""
    for config_cls, _, image_processor_cls, processor_cls in _ARCHITECTURES:
        if config_cls.model_type == model_type:
            return image_processor_cls, processor_cls
    known = [arch[0].model_type for arch in _ARCHITECTURES]
    raise ValueError(f"unknown refseg model_type {model_type!r}; known: {known}")


# A new architecture adds its classes to _ARCHITECTURES and its public names here: ``refseg/__init__.py``
# re-exports every name of this list (but processor_classes) as ``from refseg import XConfig, ...``.
__all__ = [
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
    "processor_classes",
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
    "RelaProcessor",
]
