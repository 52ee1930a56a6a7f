"""The public registry of architectures (``refseg.models.architectures``): what the pipeline, the tests and
the top-level namespace read instead of a private list."""

from __future__ import annotations

import pytest
from transformers import AutoConfig, AutoModel

import refseg
import refseg.models as models


def test_registry_lists_every_model_package_with_its_four_classes():
    packages = {"instalign", "instancevg", "metris", "presence_plurality"}
    assert packages <= set(models.model_types())
    for arch in models.architectures():
        assert arch.model_type == arch.config_class.model_type
        prefix = arch.config_class.__name__.removesuffix("Config")
        assert arch.model_class.__name__ == f"{prefix}ForReferringSegmentation"
        assert arch.image_processor_class.__name__ == f"{prefix}ImageProcessor"
        assert arch.processor_class.__name__ == f"{prefix}Processor"
        assert models.architecture(arch.model_type) is arch
        assert models.processor_classes(arch.model_type) == (arch.image_processor_class, arch.processor_class)


def test_every_registered_architecture_resolves_through_the_auto_classes():
    for arch in models.architectures():
        config = AutoConfig.for_model(arch.model_type)
        assert type(config) is arch.config_class
        assert AutoModel._model_mapping[arch.config_class] is arch.model_class


def test_unknown_model_type_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown refseg model_type 'nope'; known: \['instalign'"):
        models.architecture("nope")


def test_registry_names_are_not_top_level_model_names():
    for name in models.REGISTRY_NAMES:
        assert name in models.__all__ and name not in refseg.__all__
