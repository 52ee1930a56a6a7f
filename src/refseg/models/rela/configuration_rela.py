"""Configuration of ReLA (Liu, Ding, Jiang, "GRES: Generalized Referring Expression Segmentation", CVPR 2023).

The defaults are the released gRefCOCO Swin-B checkpoint's configuration (``referring_swin_base.yaml`` of the
authors' code): a language-aware Swin-B with pixel-word attention in every stage and language gates after
stages 1-3, BERT-base, 480x480 square inputs, Mask2Former's deformable pixel decoder (6 layers, FFN 1024,
4 points), and the ReLA decoder (Sec. 3.2): 9 layers of region-image attention (RIA) and region-region
attention, the region-language attention (RLA) in the first layer, 100 region queries tied to a 10x10
minimap, the no-target head, and the loss of Sec. 3.3 with the released weights (``docs/models/rela.md``).

Presets are rows of :data:`PRESETS`: ``swin-base`` / ``paper`` (the defaults), ``swin-tiny`` and ``r50`` (the
other released checkpoints), ``tiny`` (unit tests) and ``demo`` (CPU training on synthetic scenes).
"""

import math
from typing import Any, ClassVar, Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import interval

from ...modeling.config_fields import positive_multiple_of
from ...modeling.config_presets import (
    BERT_BASE_UNCASED,
    BERT_DEMO,
    BERT_TINY,
    SWIN_BASE,
    SWIN_DEMO,
    SWIN_TINY,
    SYNTHETIC_VOCABULARY,
    ConfigPresets,
)

Fusion = Literal["pwam", "none"]
FUSIONS = get_args(Fusion)

# Swin-T of the released swin-tiny checkpoint
SWIN_T: dict[str, Any] = {
    "model_type": "swin",
    "image_size": 224,
    "patch_size": 4,
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "num_heads": [3, 6, 12, 24],
    "window_size": 7,
    "drop_path_rate": 0.3,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}
# detectron2's torchvision-style ResNet-50 (stride in the 3x3 conv), as transformers' ResNetBackbone
RESNET_50: dict[str, Any] = {
    "model_type": "resnet",
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3],
    "layer_type": "bottleneck",
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
    "downsample_in_bottleneck": False,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}
# the released models' sub-configs, in full so that a dict override is merged into them
_RELEASED = {
    "backbone_config": {"model_type": "swin", **SWIN_BASE},
    "text_config": {"model_type": "bert", **BERT_BASE_UNCASED},
}

#: preset name -> the fields that differ from the defaults
PRESETS: dict[str, dict[str, Any]] = {
    # the released checkpoints (Liu et al. README, gRefCOCO val: cIoU / gIoU 62.42 / 63.60)
    "swin-base": _RELEASED,
    "paper": _RELEASED,
    # gRefCOCO val 57.73 / 56.86
    "swin-tiny": {**_RELEASED, "backbone_config": SWIN_T},
    # gRefCOCO val 39.53 / 38.62; the ResNet sees no language (the original ignores it in the backbone)
    "r50": {**_RELEASED, "backbone_config": RESNET_50, "encoder_fusion": "none"},
    # unit tests: 64x64, 2 decoder layers, 16 queries (4x4 minimap)
    "tiny": {
        "backbone_config": SWIN_TINY,
        "text_config": {**BERT_TINY, "max_position_embeddings": 40},
        "image_size": 64,
        "hidden_dim": 32,
        "mask_dim": 32,
        "num_heads": 4,
        "pixel_decoder_layers": 2,
        "pixel_decoder_ffn_dim": 64,
        "pixel_decoder_num_points": 2,
        "decoder_layers": 2,
        "decoder_ffn_dim": 64,
        "num_queries": 16,
        "max_text_length": 8,
    },
    # CPU training on synthetic scenes (160x160, window 5 tiles every Swin stage)
    "demo": {
        "backbone_config": SWIN_DEMO,
        "text_config": {
            **BERT_DEMO,
            "vocab_size": SYNTHETIC_VOCABULARY["vocab_size"],
            "pad_token_id": SYNTHETIC_VOCABULARY["pad_token_id"],
            "max_position_embeddings": 72,
        },
        "image_size": 160,
        "hidden_dim": 64,
        "mask_dim": 64,
        "num_heads": 4,
        "pixel_decoder_layers": 2,
        "pixel_decoder_ffn_dim": 256,
        "decoder_layers": 3,
        "decoder_ffn_dim": 256,
        "num_queries": 25,
    },
}


@strict
class RelaConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`RelaForReferringSegmentation`].

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, defaults to Swin-B, window 12): the visual encoder, a
            ``SwinConfig`` (language-aware with ``encoder_fusion="pwam"``) or a ``ResNetConfig`` (R-50).
        text_config (`dict` or `PreTrainedConfig`, defaults to BERT-base-uncased): the text encoder.
        image_size (`int`, defaults to 480): the square input side (the original resizes to 480x480, no aspect
            ratio kept).
        max_text_length (`int`, defaults to 20): sentences are cut and always padded to this many tokens (the
            decoder's language attention sees the padding, so the length changes the output).
        encoder_fusion (`str`, defaults to `"pwam"`): `"pwam"` fuses the sentence into every Swin stage
            (pixel-word attention, Sec. 3.1); `"none"` is a text-free visual encoder (the released R-50).
        pwam_gate_stages (`list[int]`, defaults to `[0, 1, 2]`): Swin stages whose fused map is gated back into
            the visual stream.
        hidden_dim (`int`, defaults to 256), mask_dim (`int`, defaults to 256), num_heads (`int`, defaults to 8):
            widths and heads of the pixel decoder and the ReLA decoder.
        pixel_decoder_layers (`int`, defaults to 6), pixel_decoder_ffn_dim (`int`, defaults to 1024),
            pixel_decoder_num_points (`int`, defaults to 4): Mask2Former's deformable pixel decoder.
        decoder_layers (`int`, defaults to 9): ReLA layers (the original's ``DEC_LAYERS: 10`` builds 9).
        decoder_ffn_dim (`int`, defaults to 2048): FFN width of the ReLA layers.
        num_queries (`int`, defaults to 100): region queries ``P``, one per minimap cell; must be a square
            (10x10, Sec. 3.2 "the image is split into P = 10x10 regions").
        rla_weight (`float`, defaults to 0.1): scale of the region-language attention's residual.
        mask_mlp_layers (`int`, defaults to 3), no_target_mlp_layers (`int`, defaults to 2): depths of the
            region-embedding and no-target MLPs.
        dropout (`float`, defaults to 0.0): dropout of the pixel decoder and the ReLA decoder.
        lambda_mask (`float`, defaults to 5.0): weight of the whole loss (the released ``MASK_WEIGHT``).
        lambda_minimap (`float`, defaults to 0.1), lambda_no_target (`float`, defaults to 0.1): weights of the
            minimap and no-target cross-entropies relative to the mask cross-entropy (Sec. 3.3).
        class_weights (`list[float]`, defaults to `[0.9, 1.1]`): weights of the two classes in every
            cross-entropy (background / no-target first is index 0; index 1 is foreground or "no target").
        init_std (`float`, defaults to 0.02): std of the normal init of linear layers outside the attention.
    """

    model_type = "rela"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig, model_type="swin", init_kwargs=dict(SWIN_BASE)
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="bert", init_kwargs=dict(BERT_BASE_UNCASED)
        ),
    }
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "hidden_dim"}
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    backbone_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_size: int = positive_multiple_of(32, default=480)  # the backbone's stride
    max_text_length: int = interval(min=2)(default=20)
    encoder_fusion: Fusion = "pwam"
    pwam_gate_stages: list[int] | tuple[int, ...] = (0, 1, 2)
    hidden_dim: int = positive_multiple_of(2, default=256)  # even: half the sine position channels are y
    mask_dim: int = interval(min=1)(default=256)
    num_heads: int = interval(min=1)(default=8)
    pixel_decoder_layers: int = interval(min=1)(default=6)
    pixel_decoder_ffn_dim: int = interval(min=1)(default=1024)
    pixel_decoder_num_points: int = interval(min=1)(default=4)
    decoder_layers: int = interval(min=1)(default=9)
    decoder_ffn_dim: int = interval(min=1)(default=2048)
    num_queries: int = interval(min=1)(default=100)
    rla_weight: float | int = 0.1
    mask_mlp_layers: int = interval(min=1)(default=3)
    no_target_mlp_layers: int = interval(min=1)(default=2)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    lambda_mask: float | int = interval(min=0.0)(default=5.0)
    lambda_minimap: float | int = interval(min=0.0)(default=0.1)
    lambda_no_target: float | int = interval(min=0.0)(default=0.1)
    class_weights: list[float | int] | tuple[float | int, ...] = (0.9, 1.1)
    init_std: float | int = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        self.pwam_gate_stages = [int(i) for i in self.pwam_gate_stages]
        self.class_weights = [float(w) for w in self.class_weights]
        super().__post_init__(**kwargs)

    @property
    def minimap_size(self) -> int:
        """Side of the minimap grid (``sqrt(num_queries)``: 10 for the released models)."""
        return math.isqrt(self.num_queries)

    def validate_architecture(self) -> None:
        """Cross-field rules, run by ``@strict`` after construction (ranges are declared on the fields)."""
        super().validate_architecture()
        if self.encoder_fusion == "pwam" and getattr(self.backbone_config, "model_type", None) != "swin":
            raise ValueError("encoder_fusion='pwam' needs a Swin backbone_config; use 'none' for a ResNet")
        if any(not 0 <= i <= 3 for i in self.pwam_gate_stages):
            raise ValueError(
                f"pwam_gate_stages must be Swin stage indices in 0..3, got {self.pwam_gate_stages}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.minimap_size**2 != self.num_queries:
            raise ValueError(
                f"num_queries must be a square (one region query per minimap cell), got {self.num_queries}"
            )
        if len(self.class_weights) != 2 or any(w <= 0 for w in self.class_weights):
            raise ValueError(f"class_weights must be two positive weights, got {self.class_weights}")


__all__ = ["PRESETS", "RelaConfig"]
