"""Configuration of the presence & plurality model (Kim, Lee, Kwak, "Improving Target Presence and Plurality
Recognition for Generalized Referring Image Segmentation", AAAI 2026).

Defaults are the paper's (Sec. 3, Sec. 4.2): a language-aware Swin-B and BERT-base, 480x480 inputs with
aspect-preserving padding, a 6-layer deformable pixel decoder with 256 channels, the target query with its
plurality (eq. 3) and presence (eq. 4) heads, and the loss weights of eq. 5 (lambda_pr 0.1, lambda_pl 0.01).
Where the paper is silent, the choice is documented on the field and in ``docs/models/presence_plurality.md``.
"""

from typing import Any, ClassVar, Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import interval, probability

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

# Presets (``PresencePluralityConfig.preset(name)``): the fields that differ from the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Sec. 4.2 (Swin-B, BERT-base, 480, 6 pixel-decoder layers, hidden 256), Table 1 "Ours" row
    "paper": {},
    # unit tests: hidden 32 with 4 heads, 2 pixel-decoder layers (so eq. 4 has two blocks)
    "tiny": {
        "backbone_config": SWIN_TINY,
        "text_config": {**BERT_TINY, "max_position_embeddings": 72},
        "image_size": 64,
        "hidden_dim": 32,
        "mask_dim": 32,
        "num_heads": 4,
        "pixel_decoder_layers": 2,
        "pixel_decoder_ffn_dim": 64,
        "pixel_decoder_num_points": 2,
        "target_query_ffn_dim": 64,
    },
    # CPU training on synthetic scenes: the synthetic word vocabulary, hidden 64, FFNs of 256
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
        "pixel_decoder_num_points": 4,
        "target_query_ffn_dim": 256,
        # beyond the paper: with eq. 5 alone a small model trained from scratch predicts no foreground for its
        # first hundreds of steps (docs/demo_model.md)
        "lambda_dice": 1.0,
    },
}


@strict
class PresencePluralityConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`PresencePluralityForReferringSegmentation`].

    Args:
        backbone_config (`dict` or `SwinConfig`, defaults to Swin-B, window 12): the multimodal encoder's Swin
            (Sec. 3.1, eq. 1).
        text_config (`dict` or `PreTrainedConfig`, defaults to BERT-base-uncased): the text encoder (Sec. 3.1).
        image_size (`int`, defaults to 480): the long side after resizing; the processor pads to a square
            (Sec. 4.2, "resize ... to 480x480 pixels while maintaining their aspect ratio through padding").
        encoder_fusion (`str`, defaults to `"pwam"`): `"pwam"` fuses the sentence into every Swin stage with
            pixel-word attention and language gates "as in (Yang et al. 2022; Liu, Ding, and Jiang 2023)"
            (Sec. 3.1); `"none"` is a plain Swin (the text reaches only the target query).
        pwam_gate_stages (`list[int]`, defaults to `[0, 1, 2]`): stages whose fused map is gated back into the
            visual stream. The paper does not specify; we follow ReLA, whose encoder it cites and whose pixel
            decoder it shares (LAVT gates all four: `[0, 1, 2, 3]`).
        hidden_dim (`int`, defaults to 256): channels `C` of the pixel decoder and the target query (Sec. 4.2).
        mask_dim (`int`, defaults to 256): channels of the stride-4 mask features.
        num_heads (`int`, defaults to 8): heads of the deformable attention and of the target-query blocks.
        dropout (`float`, defaults to 0.0): dropout of the pixel decoder and the target-query blocks.
        pixel_decoder_layers (`int`, defaults to 6): `L` MSDS blocks (eq. 2, Sec. 4.2).
        pixel_decoder_ffn_dim (`int`, defaults to 1024), pixel_decoder_num_points (`int`, defaults to 4): the
            paper refers to Mask2Former for the MSDS block; these are Mask2Former's values.
        use_target_query (`bool`, defaults to `True`): Table 2 "Target Query". `False` is the ablation baseline: the
            presence head reads the global average of the mask features (the features used for mask prediction,
            as ReLA's presence head does, Sec. 1) and there is no target query.
        use_plurality (`bool`, defaults to `True`): Table 2 "Plurality Cls.": the plurality head on `e_0` (eq. 3)
            and its loss. Needs the target query.
        target_query_ffn_dim (`int`, defaults to 2048): FFN width of the cross-attention blocks of eq. 3-4. The
            paper does not specify the block; we use a Mask2Former decoder cross-attention layer (multi-head
            attention, residual, LayerNorm, then FFN, residual, LayerNorm) because the model builds on
            Mask2Former's decoder design.
        presence_feature_level (`int`, defaults to 4): which slice `f^{M,j}` of the pixel-decoder states the
            presence path reads: 4 (stride 32, the paper's choice, Sec. 3.2), 3 (stride 16) or 2 (stride 8).
        presence_feature_offset (`int`, defaults to 0): 0 is eq. 4 literally (`e_l` reads `f_{l-1}`, i.e.
            `f_0 .. f_{L-1}`: the final state `f_L`, which the mask head uses, is never read); 1 reads
            `f_1 .. f_L` as the prose "{f_l}_{l=1}^L" suggests.
        head_mlp_layers (`int`, defaults to 2): layers of the presence and plurality MLPs ("a single MLP"; the
            paper does not give the depth; 2 as ReLA's no-target head).
        mask_mlp_layers (`int`, defaults to 2): layers of the per-pixel mask MLP (Sec. 3.1).
        mask_head_at_full_resolution (`bool`, defaults to `True`): upsample the features to the input size then
            apply the MLP (Sec. 3.1); `False` applies the MLP at stride 4 and upsamples the logits (cheaper, not
            identical because the MLP is non-linear).
        lambda_pixel, lambda_presence, lambda_plurality (`float`, defaults 1.0, 0.1, 0.01): weights of eq. 5.
        pixel_class_weights, presence_class_weights (`list[float]`, defaults `[0.9, 1.1]`): class weights of the
            two cross-entropies (background/absent first). The paper does not specify; we take ReLA's, whose
            loss this model inherits.
        plurality_ignore_no_target (`bool`, defaults to `True`): no-target samples do not enter the plurality
            loss. The paper does not specify; the plurality of nothing is undefined and its Fig. 5(b) reports
            plurality only for single- and multi-target samples. `False` labels them "single".
        presence_threshold (`float`, defaults to 0.5): the mask is emptied when the presence probability is
            below it (Sec. 3.4).
        mask_threshold (`float`, defaults to 0.5): foreground probability threshold (Sec. 3.4).
        init_std (`float`, defaults to 0.02): std of the normal init of linear layers.
        lambda_dice (`float`, defaults to 0.0): beyond the paper: weight of a Dice loss of the foreground
            probability added to `L_pixel` (`refseg.modeling.losses.foreground_dice_loss`). 0 is the paper's
            eq. 5; see `docs/demo_model.md` for why a small model trained from scratch may want it.
    """

    model_type = "presence_plurality"
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
    image_size: int = positive_multiple_of(32, default=480)  # the backbone's largest stride
    encoder_fusion: Fusion = "pwam"
    pwam_gate_stages: list[int] | tuple[int, ...] = (0, 1, 2)
    hidden_dim: int = positive_multiple_of(2, default=256)  # even: half the sine position channels are y
    mask_dim: int = interval(min=1)(default=256)
    num_heads: int = interval(min=1)(default=8)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    pixel_decoder_layers: int = interval(min=1)(default=6)
    pixel_decoder_ffn_dim: int = interval(min=1)(default=1024)
    pixel_decoder_num_points: int = interval(min=1)(default=4)
    use_target_query: bool = True
    use_plurality: bool = True
    target_query_ffn_dim: int = interval(min=1)(default=2048)
    presence_feature_level: Literal[2, 3, 4] = 4  # strides 8, 16, 32
    presence_feature_offset: Literal[0, 1] = 0
    head_mlp_layers: int = interval(min=1)(default=2)
    mask_mlp_layers: int = interval(min=1)(default=2)
    mask_head_at_full_resolution: bool = True
    lambda_pixel: float | int = interval(min=0.0)(default=1.0)
    lambda_presence: float | int = interval(min=0.0)(default=0.1)
    lambda_plurality: float | int = interval(min=0.0)(default=0.01)
    pixel_class_weights: list[float | int] | tuple[float | int, ...] = (0.9, 1.1)
    presence_class_weights: list[float | int] | tuple[float | int, ...] = (0.9, 1.1)
    plurality_ignore_no_target: bool = True
    presence_threshold: float | int = probability(default=0.5)
    mask_threshold: float | int = probability(default=0.5)
    init_std: float | int = 0.02
    lambda_dice: float | int = interval(min=0.0)(default=0.0)

    def __post_init__(self, **kwargs: Any) -> None:
        self.pwam_gate_stages = [int(i) for i in self.pwam_gate_stages]
        self.pixel_class_weights = [float(w) for w in self.pixel_class_weights]
        self.presence_class_weights = [float(w) for w in self.presence_class_weights]
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges and choices are declared on the fields)."""
        super().validate_architecture()
        if any(not 0 <= i <= 3 for i in self.pwam_gate_stages):
            raise ValueError(
                f"pwam_gate_stages must be Swin stage indices in 0..3, got {self.pwam_gate_stages}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.use_plurality and not self.use_target_query:
            raise ValueError(
                "use_plurality=True needs use_target_query=True (the plurality head reads e_0, eq. 3)"
            )
        for name in ("pixel_class_weights", "presence_class_weights"):
            weights = getattr(self, name)
            if len(weights) != 2 or any(w <= 0 for w in weights):
                raise ValueError(
                    f"{name} must be two positive weights (background/absent, foreground/present)"
                )


__all__ = ["PresencePluralityConfig"]
