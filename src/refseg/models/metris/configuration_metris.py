"""METRIS configuration ("METRIS: Multi-Expressions for Transformer-based Referring Image Segmentation").

Defaults are the paper's (Sec. 3, Sec. 4.1, App. A): Swin-B + BERT-base (uncased), 480x480 inputs, 20 text
tokens, curation ratio r = 30% (Fig. 6), the pixel contrastive loss (eq. 4) with a learnable temperature, and
the full guidance set ``{Q_L_hat, Q_V_hat}`` (Sec. 3.3, Table 5 last row). Every ablation of Tables 5, 6, 8 and
Fig. 6 is a field; ``docs/models/metris.md`` lists the choices made where the paper is silent.
"""

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
    ConfigPresets,
)

Guidance = Literal["pure_le", "enhanced_le", "ve", "enhanced_le_all_pixels", "full"]
EncoderFusion = Literal["pwam", "none"]
MaskLoss = Literal["ce", "bce"]
GUIDANCE = get_args(Guidance)
ENCODER_FUSION = get_args(EncoderFusion)
MASK_LOSS = get_args(MaskLoss)

# Presets (``MetrisConfig.preset(name)``): the fields that differ from the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Sec. 4.1 and App. A (Swin-B, BERT-base, 480x480, r = 30%), Table 5 last row (full guidance set)
    "paper": {},
    # unit tests: decoder width 32, the no-target classifier on (synthetic scenes have no-target expressions)
    "tiny": {
        "backbone_config": SWIN_TINY,
        "text_config": {**BERT_TINY, "max_position_embeddings": 64},
        "image_size": 64,
        "joint_dim": 16,
        "num_heads": 4,
        "ffn_dim": 64,
        "decoder_hidden_dim": 32,
        "no_target_head": True,
        "no_target_hidden_dim": 16,
    },
    # CPU training on synthetic scenes, under 10 MB of float32 weights with encoder_fusion="pwam"
    "demo": {
        "backbone_config": SWIN_DEMO,
        "text_config": {**BERT_DEMO, "vocab_size": 512, "max_position_embeddings": 64},
        "image_size": 160,
        "joint_dim": 64,
        "num_heads": 4,
        "ffn_dim": 192,  # 256 made the fused (encoder_fusion="pwam") model 10.2 MB in float32; 192: 9.9 MB
        "decoder_hidden_dim": 64,
        "no_target_head": True,
        "no_target_hidden_dim": 64,
        # beyond the paper: with its loss alone a 300-step run from scratch predicted no foreground at all
        # (docs/demo_model.md)
        "lambda_dice": 1.0,
    },
}


@strict
class MetrisConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`MetrisForReferringSegmentation`].

    The width ``D`` of the linguistic and visual expression tokens is the text encoder's hidden size (Sec. 3.1:
    ``Q_L`` is ``L x D``), 768 for BERT-base.

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, defaults to Swin-B): vision encoder (4 stages, strides 4-32).
        text_config (`dict` or `PreTrainedConfig`, defaults to BERT-base uncased): language encoder (Sec. 3.1).
        image_size (`int`, defaults to 480): input resolution (App. A).
        max_text_length (`int`, defaults to 20): tokens per expression, [CLS] and [SEP] included (the processor
            truncates to it). The paper does not say; 20 is the value of its code lineage (LAVT).
        encoder_fusion (`str`, defaults to `"pwam"`): `"pwam"` fuses the words into every Swin stage (pixel-word
            attention and a gate, LAVT-style); `"none"` is a plain Swin. The paper only says "a vision encoder".
        joint_dim (`int`, defaults to 256): width of the joint embedding space of ``phi^V``, ``phi^L`` (eq. 1).
        num_heads (`int`, defaults to 8): heads of every attention layer of the extractor and the decoder.
        ffn_dim (`int`, defaults to 2048): hidden width of every MLP / FFN (eq. 6-7).
        dropout (`float`, defaults to 0.0): dropout in attention layers and MLPs.
        num_enhance_layers (`int`, defaults to 1): cross-attention layers that enhance ``Q_L`` into ``Q_L_hat``
            (Sec. 3.2, "the linguistic expression tokens are first enhanced by the cross-attention layers").
        curation_ratio (`float`, defaults to 0.3): ``r`` of eq. 2; every cue keeps ``N_p = ceil(r N)`` tokens (Fig. 6).
        aggregate_mean_scale (`bool`, defaults to `False`): multiply eq. 5 by the literal ``1 / N_p``. Off: the
            softmax weights already sum to one over the curated tokens.
        guidance (`str`, defaults to `"full"`): Table 5's guidance set: `"pure_le"` (``Q_L``), `"enhanced_le"`
            (``Q_L_hat``), `"ve"` (``Q_V_hat``), `"enhanced_le_all_pixels"` (``Q_L_hat`` + all ``N`` vision
            tokens), `"full"` (``Q_L_hat`` + ``Q_V_hat``).
        curation (`bool`, defaults to `True`): Table 6a Step 1. `False` keeps every vision token for every cue
            (the dynamic mask of eq. 3 is all zeros).
        adaptive_refinement (`bool`, defaults to `True`): Table 6a Step 2. `False` skips eq. 6 (``F_r = F_a``).
        relationship_modeling (`bool`, defaults to `True`): Table 6a Step 3. `False` skips eq. 7 (``Q_V_hat = F_r``).
        use_global_cue (`bool`, defaults to `True`): Table 6b, the [CLS] token is a cue of the extractor.
        use_local_cues (`bool`, defaults to `True`): Table 6b, the word tokens are cues of the extractor.
        use_contrastive_loss (`bool`, defaults to `True`): Table 8a, supervise the [CLS] relevance map by eq. 4.
        dynamic_mask_in_aggregation (`bool`, defaults to `True`): Table 8b, add ``M`` inside eq. 5's softmax.
        decoder_hidden_dim (`int`, defaults to 768): channels of the segmentation decoder (Sec. 3.3).
        mask_loss (`str`, defaults to `"ce"`): `"ce"` is a 2-class cross-entropy with ``seg_class_weights``
            (background, foreground); `"bce"` a 1-channel binary cross-entropy ("binary cross-entropy", Sec. 3.3).
        seg_class_weights (`list[float]`, defaults to `[0.9, 1.1]`): class weights of the `"ce"` mask loss.
        lambda_seg (`float`, defaults to 2.0): weight of the mask loss.
        lambda_cl (`float`, defaults to 1.0): weight of the pixel contrastive loss (eq. 4).
        tau_init (`float`, defaults to 1.0): initial learnable temperature ``tau`` of eq. 4.
        tau_min (`float`, defaults to 0.01): ``tau`` is clamped to at least this value.
        no_target_head (`bool`, defaults to `False`): the no-target classifier of App. A (gRefCOCO, ReLA-style).
            Without it ``no_target_logits`` is ``-inf`` (never no-target), as on RefCOCO.
        no_target_hidden_dim (`int`, defaults to 256): hidden width of the no-target MLP.
        no_target_class_weights (`list[float]`, defaults to `[0.9, 1.1]`): CE weights (target, no-target).
        lambda_nt (`float`, defaults to 0.1): weight of the no-target loss.
        init_std (`float`, defaults to 0.02): std of the normal init of linear and conv layers.
        position_encoding (`bool`, defaults to `False`): beyond the paper, which adds no positional encoding: a
            2-D sine position embedding (`refseg.modeling.position_encoding.SinePositionEmbedding`) added to the
            stride-32 vision tokens ``F_v`` (so the enhancer and the extractor know where each token is) and to
            the map entering every decoder stage, for sentences that single out an object by its place
            ("on the left", "the topmost", "above the ring"). Needs even ``hidden_size`` and
            ``decoder_hidden_dim``.
        lambda_dice (`float`, defaults to 0.0): beyond the paper: weight of a Dice loss of the foreground
            probability added to the mask loss (inside `lambda_seg`; `refseg.modeling.losses.foreground_dice_loss`).
            0 is the paper's loss; see `docs/demo_model.md` for why a small model trained from scratch may want it.
    """

    model_type = "metris"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig, model_type="swin", init_kwargs=dict(SWIN_BASE)
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="bert", init_kwargs=dict(BERT_BASE_UNCASED)
        ),
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    backbone_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_size: int = positive_multiple_of(32, default=480)  # the backbone's largest stride
    max_text_length: int = interval(min=1)(default=20)
    encoder_fusion: EncoderFusion = "pwam"
    joint_dim: int = interval(min=1)(default=256)
    num_heads: int = interval(min=1)(default=8)
    ffn_dim: int = interval(min=1)(default=2048)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    num_enhance_layers: int = interval(min=1)(default=1)
    curation_ratio: float | int = interval(min=0.0, max=1.0, exclude_min=True)(default=0.3)
    aggregate_mean_scale: bool = False
    guidance: Guidance = "full"
    curation: bool = True
    adaptive_refinement: bool = True
    relationship_modeling: bool = True
    use_global_cue: bool = True
    use_local_cues: bool = True
    use_contrastive_loss: bool = True
    dynamic_mask_in_aggregation: bool = True
    decoder_hidden_dim: int = interval(min=1)(default=768)
    mask_loss: MaskLoss = "ce"
    seg_class_weights: list[float | int] | tuple[float | int, ...] | None = None
    lambda_seg: float | int = interval(min=0.0)(default=2.0)
    lambda_cl: float | int = interval(min=0.0)(default=1.0)
    tau_init: float | int = interval(min=0.0, exclude_min=True)(default=1.0)
    tau_min: float | int = interval(min=0.0, exclude_min=True)(default=0.01)
    no_target_head: bool = False
    no_target_hidden_dim: int = interval(min=1)(default=256)
    no_target_class_weights: list[float | int] | tuple[float | int, ...] | None = None
    lambda_nt: float | int = interval(min=0.0)(default=0.1)
    init_std: float | int = 0.02
    lambda_dice: float | int = interval(min=0.0)(default=0.0)
    position_encoding: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.seg_class_weights is None:
            self.seg_class_weights = [0.9, 1.1]
        if self.no_target_class_weights is None:
            self.no_target_class_weights = [0.9, 1.1]
        self.seg_class_weights = [float(w) for w in self.seg_class_weights]
        self.no_target_class_weights = [float(w) for w in self.no_target_class_weights]
        super().__post_init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        """``D``, the width of the expression tokens (the text encoder's hidden size)."""
        return int(self.text_config.hidden_size)

    @property
    def uses_visual_expression(self) -> bool:
        """Whether the guidance set contains ``Q_V_hat`` (and so the extractor and eq. 4 run)."""
        return self.guidance in ("ve", "full")

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges and choices are declared on the fields)."""
        super().validate_architecture()
        if not (self.use_global_cue or self.use_local_cues):
            raise ValueError("at least one of use_global_cue and use_local_cues must be True")
        for name, width in (
            ("the text hidden size", self.hidden_size),
            ("decoder_hidden_dim", self.decoder_hidden_dim),
        ):
            if width % self.num_heads:
                raise ValueError(f"{name} ({width}) must be divisible by num_heads ({self.num_heads})")
        if self.position_encoding and (self.hidden_size % 2 or self.decoder_hidden_dim % 2):
            raise ValueError(
                "position_encoding needs an even text hidden size and decoder_hidden_dim (half the channels "
                f"encode y, half x), got {self.hidden_size} and {self.decoder_hidden_dim}"
            )
        for name in ("seg_class_weights", "no_target_class_weights"):
            weights = getattr(self, name)
            if len(weights) != 2 or min(weights) < 0:
                raise ValueError(f"{name} must be two non-negative weights, got {weights}")


__all__ = ["MetrisConfig"]
