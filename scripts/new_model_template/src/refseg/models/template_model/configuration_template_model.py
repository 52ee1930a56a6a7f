"""Configuration of TemplateModel (TODO(paper): authors, "title", venue year).

The defaults are the paper's configuration: each field says where the paper gives its value (section, table
or equation), or, where the paper is silent, what we chose and why (``docs/models/template_model.md``).
TODO(paper): replace the skeleton's fields (a plain convolutional encoder, a text encoder and a dot-product
mask head) with the paper's.
"""

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import interval

from ...modeling.config_fields import positive_multiple_of
from ...modeling.config_presets import (
    BERT_BASE_UNCASED,
    BERT_DEMO,
    BERT_TINY,
    SYNTHETIC_VOCABULARY,
    ConfigPresets,
)

# Presets (``TemplateModelConfig.preset(name)``): the fields that differ from the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # TODO(paper): the paper's main configuration, citing its table row (e.g. "Table 1, 'Ours (Swin-B)' row")
    "paper": {},
    # unit tests (the shared model tester): 64x64 inputs, a 2-layer BERT of width 32, hidden 32
    "tiny": {
        "text_config": {**BERT_TINY, "max_position_embeddings": 32},
        "image_size": 64,
        "encoder_channels": [16, 32, 32],
        "hidden_dim": 32,
    },
    # CPU training on synthetic scenes (the synthetic word vocabulary), 160x160
    "demo": {
        "text_config": {
            **BERT_DEMO,
            "vocab_size": SYNTHETIC_VOCABULARY["vocab_size"],
            "pad_token_id": SYNTHETIC_VOCABULARY["pad_token_id"],
            "max_position_embeddings": 64,
        },
        "image_size": 160,
        "encoder_channels": [32, 64, 64],
        "hidden_dim": 64,
    },
}


@strict
class TemplateModelConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`TemplateModelForReferringSegmentation`].

    Args:
        text_config (`dict` or `PreTrainedConfig`, defaults to BERT-base-uncased): the text encoder.
            TODO(paper): the paper's text encoder (section).
        image_size (`int`, defaults to 480): the side of the square model input. TODO(paper): section.
        encoder_channels (`list[int]`, defaults to `[64, 128, 256]`): channels of the skeleton's convolutional
            encoder, one stride-2 stage each (output stride `2 ** len(encoder_channels)`). TODO(paper): the
            paper's visual encoder (e.g. a Swin from `refseg.modeling.backbone`).
        hidden_dim (`int`, defaults to 256): channels `C` in which pixels and the sentence meet.
        lambda_mask (`float`, defaults to 1.0): weight of the mask cross-entropy. TODO(paper): equation.
        lambda_no_target (`float`, defaults to 1.0): weight of the no-target cross-entropy. TODO(paper): equation.
        init_std (`float`, defaults to 0.02): std of the normal init of linear layers and convolutions.
    """

    model_type = "template_model"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="bert", init_kwargs=dict(BERT_BASE_UNCASED)
        ),
    }
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "hidden_dim"}
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    text_config: dict | PreTrainedConfig | None = None
    image_size: int = positive_multiple_of(32, default=480)  # the inputs checks' largest stride
    encoder_channels: list[int] | tuple[int, ...] = (64, 128, 256)
    hidden_dim: int = interval(min=1)(default=256)
    lambda_mask: float | int = interval(min=0.0)(default=1.0)
    lambda_no_target: float | int = interval(min=0.0)(default=1.0)
    init_std: float | int = interval(min=0.0)(default=0.02)

    def __post_init__(self, **kwargs: Any) -> None:
        self.encoder_channels = [int(c) for c in self.encoder_channels]
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges and choices are declared on the fields)."""
        super().validate_architecture()
        if not self.encoder_channels or any(c <= 0 for c in self.encoder_channels):
            raise ValueError(f"encoder_channels must be positive channel counts, got {self.encoder_channels}")


__all__ = ["TemplateModelConfig"]
