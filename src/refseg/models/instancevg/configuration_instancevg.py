"""InstanceVG configuration (Dai et al., "Improving Generalized Visual Grounding with Instance-aware Joint
Learning", IEEE TPAMI).

The defaults are the configuration of the released gRefCOCO checkpoint (BEiT-3 base at 320x320, C = 256,
N_q = 10 instance queries, a 3-layer point-prior deformable decoder). Where the paper's text and the code the
checkpoints were trained with disagree, the default follows the code and the paper's variant is a switch;
``docs/models/instancevg.md`` lists every such difference.
"""

from typing import Any, ClassVar, Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import interval, probability

from ...modeling.beit3 import Beit3Config
from ...modeling.beit3.config import BEIT3_PRESETS
from ...modeling.config_fields import positive_multiple_of
from ...modeling.config_presets import ConfigPresets

TextFilter = Literal["mean", "l2_norm", "none"]
MinimapReduction = Literal["max", "mean"]
PointSelection = Literal["distance_guided", "topk"]
DistanceNormalization = Literal["diagonal", "none"]
AuxLossWeighting = Literal["unweighted", "weighted"]
MaskMerge = Literal["merge", "global", "instance"]
TEXT_FILTER = get_args(TextFilter)
MINIMAP_REDUCTION = get_args(MinimapReduction)
POINT_SELECTION = get_args(PointSelection)
DISTANCE_NORMALIZATION = get_args(DistanceNormalization)
AUX_LOSS_WEIGHTING = get_args(AuxLossWeighting)
MASK_MERGE = get_args(MaskMerge)

_REFCOCO = {"num_queries": 1, "negative_mask_weight": 0.0, "max_text_length": 20}
# Presets (``InstanceVGConfig.preset(name)``): the fields that differ from the defaults, which are the
# released gRefCOCO model's (BEiT-3 base at 320x320).
PRESETS: dict[str, dict[str, Any]] = {
    # the released generalized models, one configuration on three datasets: gRefCOCO (Table 3; GREC boxes,
    # Table 6), Ref-ZOM (Table 4), R-RefCOCO (Table 5)
    "b-grefcoco": {},
    "b-refzom": {},
    "b-rrefcoco": {},
    # the released RefCOCO/+/g models (Tables 1 and 2, base and large encoders): one query, no
    # negative-mask loss, 20 text tokens
    "b-refcoco": _REFCOCO,
    "l-refcoco": {"encoder_config": BEIT3_PRESETS["large"], **_REFCOCO},
    # unit tests: 64x64 images, a 2-layer BEiT-3 of width 32 over 8x8 patches, C = 32, 6 queries
    "tiny": {
        "encoder_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 1000,
            "image_size": 64,
            "patch_size": 8,
            "max_text_positions": 64,
            "drop_path_rate": 0.0,
        },
        "image_size": 64,
        "max_text_length": 12,
        "hidden_channels": 32,
        "num_queries": 6,
        "t2i_num_heads": 4,
        "t2i_ffn_dim": 64,
        "decoder_layers": 2,
        "decoder_num_heads": 4,
        "decoder_num_points": 2,
        "decoder_ffn_dim": 64,
        "dropout": 0.0,
    },
    # a small model for CPU experiments: 128x128, BEiT-3 of width 128 / 4 layers, C = 64
    "demo": {
        "encoder_config": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": 128,
            "patch_size": 8,
            "max_text_positions": 64,
            "drop_path_rate": 0.0,
        },
        "image_size": 128,
        "max_text_length": 20,
        "hidden_channels": 64,
        "num_queries": 8,
        "t2i_num_heads": 4,
        "t2i_ffn_dim": 128,
        "decoder_layers": 3,
        "decoder_num_heads": 4,
        "decoder_ffn_dim": 256,
        "dropout": 0.0,
    },
}


@strict
class InstanceVGConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`InstanceVGForReferringSegmentation`].

    Architecture (Sec. 3, Fig. 2):
        encoder_config (`dict` or `Beit3Config`, defaults to BEiT-3 base at 320x320): the multiway encoder.
        hidden_channels (`int`, defaults to 256): `C`, width of the projected features, FPN, UNet and decoders.
        num_queries (`int`, defaults to 10): `N_q`, instance queries and prior points (Table 12).
        max_text_length (`int`, defaults to 50): tokens per expression (BOS and EOS included) of the processor.
        t2i_num_heads (`int`, defaults to 8) / t2i_ffn_dim (`int`, defaults to 512): the one-layer T2I decoder of
            the Instance Query Generator (Sec. 3.2.1).
        decoder_layers (`int`, defaults to 3), decoder_num_heads (8), decoder_num_points (4),
            decoder_ffn_dim (1024): the point-prior multi-scale deformable decoder (Sec. 3.2.2) over 4 levels.
        dropout (`float`, defaults to 0.1): dropout of the T2I and deformable decoders (attention, MSDA, FFN).

    Instance Query Generator switches (Sec. 3.2.1, Tables 9-12):
        text_filter (`str`, defaults to `"mean"`): how tokens are ranked by Algorithm 1. `"mean"` (the code)
            scores a token by the mean of its features, `"l2_norm"` by their L2 norm (the paper's text), `"none"`
            disables the filter as the code's ablation does: top-``N_q`` values per channel.
        minimap_reduction (`str`, defaults to `"max"`): the spatial map ``M_s`` is the `"max"` (code) or
            `"mean"` (paper) over the valid filtered tokens' attention maps.
        point_selection (`str`, defaults to `"distance_guided"`): Algorithm 2, or `"topk"` (the "TopK Selector"
            of Fig. 4: the ``N_q`` highest cells of ``M_s``).
        distance_weight (`float`, defaults to 0.003): ``W_dist`` of Algorithm 2.
        distance_normalization (`str`, defaults to `"diagonal"`): the code divides the distance (in grid cells)
            by the grid diagonal ``sqrt(h^2 + w^2)``; `"none"` uses it as in Algorithm 2's text.
        point_prior (`bool`, defaults to `True`): the decoder's reference points are the selected points plus a
            learned offset (Table 9). `False` uses the learned ``sigmoid(Linear(query_pos))`` alone.

    Matching and losses (Sec. 3.3-3.4, eq. 5-7):
        cost_class, cost_bbox, cost_giou, cost_point (1, 5, 2, 2): matching weights of eq. 5 (`cost_point=0`
            is the matcher without the point term, Table 11).
        loss_class_weight, loss_bbox_weight, loss_giou_weight (1, 5, 2): DETR loss weights of the last layer.
        no_object_weight (`float`, defaults to 0.1): CE weight of the no-object class.
        aux_loss_weighting (`str`, defaults to `"unweighted"`): the original adds the two earlier decoder layers'
            DETR losses with weight 1/1/1; `"weighted"` uses the last layer's weights for them too.
        detr_loss_weight (`float`, defaults to 0.1): ``lambda_detr`` of eq. 6.
        global_mask_loss_weight (1.0), instance_mask_loss_weight (1.0): ``lambda_seg``, ``lambda_instance``.
        negative_mask_weight (`float`, defaults to 0.2): ``lambda_neg`` of eq. 7 (0 disables negatives).
        minimap_loss_weight (`float`, defaults to 0.1): dice + BCE of ``M_s`` against the target downsampled to
            the patch grid ("Minimap Sup.", Fig. 4); 0 disables it.
        no_target_loss_weight (`float`, defaults to 0.2): ``lambda_exist``; the head is trained with a two-way
            softmax cross-entropy with class weights ``no_target_class_weights`` (0.9 target, 1.1 no target).

    Post-processing (Sec. 3.5, Fig. 5):
        score_weighted (`bool`, defaults to `True`): query score = object probability x target probability.
        score_threshold (`float`, defaults to 0.7): ``thr_q``; the released configs use 0.7, the paper's text
            (Sec. 4.5.5, Table 13) says 0.9.
        mask_threshold (`float`, defaults to 0.5): ``thr_m``.
        mask_merge (`str`, defaults to `"merge"`): output mask = global OR kept instance masks (`"merge"`), the
            global mask alone or the kept instance masks alone.
        init_std (`float`, defaults to 0.02): std of the truncated-normal init of the encoder's linear layers.
    """

    model_type = "instancevg"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "encoder_config": SubConfigSpec(config_class=Beit3Config),  # BEiT-3 base at 320x320
    }
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "hidden_channels"}
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    encoder_config: dict | PreTrainedConfig | None = None
    image_size: int = interval(min=1)(default=320)
    max_text_length: int = interval(min=1)(default=50)
    hidden_channels: int = positive_multiple_of(4, default=256)  # SimpleFPN splits it in 4
    num_queries: int = interval(min=1)(default=10)
    t2i_num_heads: int = interval(min=1)(default=8)
    t2i_ffn_dim: int = interval(min=1)(default=512)
    decoder_layers: int = interval(min=1)(default=3)
    decoder_num_heads: int = interval(min=1)(default=8)
    decoder_num_points: int = interval(min=1)(default=4)
    decoder_ffn_dim: int = interval(min=1)(default=1024)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    text_filter: TextFilter = "mean"
    minimap_reduction: MinimapReduction = "max"
    point_selection: PointSelection = "distance_guided"
    distance_weight: float | int = interval(min=0.0)(default=0.003)
    distance_normalization: DistanceNormalization = "diagonal"
    point_prior: bool = True
    cost_class: float | int = interval(min=0.0)(default=1.0)
    cost_bbox: float | int = interval(min=0.0)(default=5.0)
    cost_giou: float | int = interval(min=0.0)(default=2.0)
    cost_point: float | int = interval(min=0.0)(default=2.0)
    loss_class_weight: float | int = interval(min=0.0)(default=1.0)
    loss_bbox_weight: float | int = interval(min=0.0)(default=5.0)
    loss_giou_weight: float | int = interval(min=0.0)(default=2.0)
    no_object_weight: float | int = interval(min=0.0)(default=0.1)
    aux_loss_weighting: AuxLossWeighting = "unweighted"
    detr_loss_weight: float | int = interval(min=0.0)(default=0.1)
    global_mask_loss_weight: float | int = interval(min=0.0)(default=1.0)
    instance_mask_loss_weight: float | int = interval(min=0.0)(default=1.0)
    negative_mask_weight: float | int = interval(min=0.0)(default=0.2)
    minimap_loss_weight: float | int = interval(min=0.0)(default=0.1)
    no_target_loss_weight: float | int = interval(min=0.0)(default=0.2)
    no_target_class_weights: list[float | int] | tuple[float | int, ...] | None = None
    score_weighted: bool = True
    score_threshold: float | int = probability(default=0.7)
    mask_threshold: float | int = probability(default=0.5)
    mask_merge: MaskMerge = "merge"
    init_std: float | int = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        if self.no_target_class_weights is None:
            self.no_target_class_weights = [0.9, 1.1]
        self.no_target_class_weights = [float(w) for w in self.no_target_class_weights]
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges and choices are declared on the fields)."""
        super().validate_architecture()
        for name in ("t2i_num_heads", "decoder_num_heads"):
            if self.hidden_channels % getattr(self, name):
                raise ValueError(
                    f"hidden_channels ({self.hidden_channels}) must be divisible by {name} ({getattr(self, name)})"
                )
        encoder = self.encoder_config
        grid, rest = divmod(self.image_size, encoder.patch_size)
        if rest or grid % 2:
            raise ValueError(
                f"image_size ({self.image_size}) must be an even multiple of the patch size ({encoder.patch_size})"
            )
        if encoder.image_size != self.image_size:
            raise ValueError(
                f"image_size ({self.image_size}) must equal encoder_config.image_size ({encoder.image_size})"
            )
        if self.max_text_length > encoder.max_text_length:
            raise ValueError(
                f"max_text_length ({self.max_text_length}) exceeds what the encoder's text position table allows "
                f"({encoder.max_text_length})"
            )
        if len(self.no_target_class_weights) != 2:
            raise ValueError(
                f"no_target_class_weights must have 2 entries, got {self.no_target_class_weights}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the encoder's patch grid (20 at 320x320 with 16-pixel patches)."""
        return self.image_size // self.encoder_config.patch_size

    @classmethod
    def preset(
        cls, name: str, text_config: dict[str, Any] | None = None, **overrides: Any
    ) -> "InstanceVGConfig":
        """The config of preset ``name``; keyword arguments override any field (an ``encoder_config`` dict is
        merged into the preset's).

        ``text_config`` (what ``examples/train.py`` passes: the tokenizer's ``vocab_size``) sets the encoder's
        text vocabulary; other keys in it are ignored (the text tower is part of BEiT-3). An ``image_size``
        override also sets the encoder's.
        """
        encoder = overrides.get("encoder_config", {})
        if isinstance(encoder, dict):
            vocabulary = (
                {"vocab_size": int(text_config["vocab_size"])}
                if text_config and "vocab_size" in text_config
                else {}
            )
            size = {"image_size": overrides["image_size"]} if "image_size" in overrides else {}
            overrides["encoder_config"] = {**vocabulary, **encoder, **size}
        return super().preset(name, **overrides)


__all__ = ["InstanceVGConfig"]
