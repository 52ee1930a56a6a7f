"""InstAlign configuration (Nguyen et al., "Instance-Aware Generalized Referring Expression Segmentation").

Defaults are the paper's (Sec. 3, Sec. 4.3 / Table 3 default row, Sec. 8): Swin-B + RoBERTa-base, 480x480
inputs, a 6-layer deformable pixel decoder, N = 100 object queries refined by K = 9 Phrase-Object Transformer
blocks cycling over the 3 low-resolution scales, matching weights (2, 5, 1) and loss weights (5, 1, 0.1).
"""

from typing import Any, ClassVar, Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import interval, probability

from ...modeling.config_fields import positive_multiple_of
from ...modeling.config_presets import SWIN_BASE, SWIN_DEMO, SWIN_TINY, SYNTHETIC_VOCABULARY, ConfigPresets

InstanceSupervision = Literal["none", "standard", "phrase_aligned"]
Aggregation = Literal["threshold", "aia", "aia_prelu"]
NoTargetInput = Literal["global_and_sentence", "global", "sentence", "mean_queries"]
Decoder = Literal["phrase_object", "mask2former"]
INSTANCE_SUPERVISION = get_args(InstanceSupervision)
AGGREGATION = get_args(Aggregation)
NO_TARGET_INPUT = get_args(NoTargetInput)
DECODER = get_args(Decoder)

ROBERTA_BASE = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
# a 2-layer RoBERTa of the small presets; "demo" widens it and reads the synthetic word vocabulary
_ROBERTA_SMALL = {
    **ROBERTA_BASE,
    "model_type": "roberta",
    "num_hidden_layers": 2,
    "max_position_embeddings": 66,
}

# Presets (``InstAlignConfig.preset(name)``): the fields that differ from the defaults above.
PRESETS: dict[str, dict[str, Any]] = {
    # Sec. 4.3, Table 3 default row (Swin-B, RoBERTa-base, 480x480, N = 100, K = 9)
    "paper": {},
    # unit tests (milliseconds): 64x64, hidden 32, N = 8 queries, K = 3 blocks, 1 pixel-decoder layer
    "tiny": {
        "backbone_config": SWIN_TINY,
        "text_config": {
            **_ROBERTA_SMALL,
            "vocab_size": 100,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "image_size": 64,
        "hidden_dim": 32,
        "mask_dim": 32,
        "num_queries": 8,
        "num_blocks": 3,
        "num_heads": 4,
        "ffn_dim": 64,
        "pixel_decoder_layers": 1,
        "pixel_decoder_ffn_dim": 64,
        "pixel_decoder_num_points": 2,
    },
    # The model shipped with the package, trained on synthetic scenes on 2 CPU cores in about 20 minutes and
    # stored in < 10 MB. 160x160 inputs give 40x40 mask features, enough for shapes of ~15 px; the demo Swin
    # (~1.0 M parameters) keeps two blocks at stride 16 where spatial relations are resolved; a 2-layer text
    # encoder of width 96 over the word-level synthetic vocabulary (a grammar of a few dozen words needs no
    # more); N = 16 queries (scenes hold at most ~8 objects and Table 3d shows N only needs to exceed the object
    # count); K = 6 blocks, two rounds over the 3 scales so every scale is revisited after text conditioning.
    # About 1.9 M parameters, ~7.7 MB in float32, one training step of 8 images ~0.9 s on one core.
    "demo": {
        "backbone_config": SWIN_DEMO,
        "text_config": {
            **_ROBERTA_SMALL,
            **SYNTHETIC_VOCABULARY,
            "hidden_size": 96,
            "num_attention_heads": 4,
            "intermediate_size": 192,
        },
        "image_size": 160,
        "hidden_dim": 64,
        "mask_dim": 64,
        "num_queries": 16,
        "num_blocks": 6,
        "num_heads": 4,
        "ffn_dim": 256,
        "pixel_decoder_layers": 2,
        "pixel_decoder_ffn_dim": 256,
        "pixel_decoder_num_points": 4,
        "text_conditioned_score": True,
    },
}


@strict
class InstAlignConfig(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`InstAlignForReferringSegmentation`].

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, defaults to Swin-B): vision backbone (4 stages, strides 4-32).
        text_config (`dict` or `PreTrainedConfig`, defaults to RoBERTa-base): text encoder (Sec. 3.2).
        image_size (`int`, defaults to 480): training / inference resolution (square).
        hidden_dim (`int`, defaults to 256): channels `C` of queries, text and pixel features.
        mask_dim (`int`, defaults to 256): channels of the stride-4 mask features `V_4` (eq. 4).
        num_queries (`int`, defaults to 100): object queries `N` (Table 3d).
        num_blocks (`int`, defaults to 9): Phrase-Object Transformer blocks `K` (Sec. 3.3), round-robin over 3 scales.
        num_heads (`int`, defaults to 8): attention heads in the decoder and the pixel decoder.
        ffn_dim (`int`, defaults to 2048): FFN width of the Phrase-Object Transformer.
        dropout (`float`, defaults to 0.0): dropout in the decoder and pixel decoder.
        pixel_decoder_layers (`int`, defaults to 6): deformable encoder layers of the pixel decoder (Sec. 8).
        pixel_decoder_ffn_dim (`int`, defaults to 1024): FFN width of the pixel decoder (Mask2Former's value).
        pixel_decoder_num_points (`int`, defaults to 4): sampling points per head and level.
        transformer_decoder (`str`, defaults to `"phrase_object"`): Table 3e. `"phrase_object"` is the Phrase-Object
            Transformer (Sec. 3.3); `"mask2former"` removes the Object-Text Cross Attention from every block, which
            leaves Mask2Former's decoder (masked cross-attention, self-attention, FFN) with no text guidance:
            queries and scores do not see the sentence (text still reaches the Phrase-Object Alignment and the
            no-target predictor through ``T_0``). The table's third decoder, ReLA's, is not implemented.
        masked_attention (`bool`, defaults to `True`): restrict the visual cross-attention of each block to the
            foreground of the previous block's mask prediction, as Mask2Former does (the paper builds on its
            decoder and does not say otherwise). With `False` the cross-attention is dense.
        text_conditioned_score (`bool`, defaults to `False`): add a bilinear query-sentence matching term
            ``<W_q Q_i, W_t T_sen> / sqrt(C)`` to the score head's logits. The paper only specifies "a score
            prediction head"; with encoders trained from scratch (the demo preset) this direct matching term
            made grounding emerge faster in short CPU runs (60 validation scenes after ~800-1000 steps of
            batch 8: gIoU 30.8 vs 27.3 without it; a single seed each, so a small effect).
        deep_supervision (`bool`, defaults to `True`): also apply the instance and merged-mask losses to the
            predictions of the learned queries and of every intermediate block (Mask2Former's auxiliary losses).
            The paper does not say; we keep it on because the masked attention of block `k` consumes the mask
            predicted after block `k-1`, so those intermediate heads must produce meaningful masks, and because
            Mask2Former, which InstAlign adapts, trains this way. The no-target loss is applied to the last block.
        instance_supervision (`str`, defaults to `"phrase_aligned"`): Table 3a. `"none"` trains with the merged
            mask and no-target losses only; `"standard"` adds Hungarian-matched instance supervision with the
            score and mask terms of eq. 6-7; `"phrase_aligned"` adds the Phrase-Object Alignment term (eq. 3) to
            both the matching cost and the loss.
        aggregation (`str`, defaults to `"aia_prelu"`): Table 3b. `"threshold"` keeps the union of the instances
            whose score exceeds `aggregation_threshold`; `"aia"` is eq. 8 without the PReLU; `"aia_prelu"` is eq. 8.
        aggregation_threshold (`float`, defaults to 0.5): score threshold for `aggregation="threshold"`.
        no_target_input (`str`, defaults to `"global_and_sentence"`): Table 3c, input of the no-target MLP:
            `Concat(Q_global, T_sen)` (eq. 11), `Q_global` (eq. 10) alone, `T_sen` alone, or the mean of the queries.
        lambda_score, lambda_mask, lambda_phrase (`float`, defaults 2, 5, 1): matching cost weights (eq. 6, Sec. 8).
        lambda_merged, lambda_inst, lambda_nt (`float`, defaults 5, 1, 0.1): total-loss weights (eq. 13, Sec. 8).
        init_std (`float`, defaults to 0.02): std of the normal init of linear layers.
    """

    model_type = "instalign"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig, model_type="swin", init_kwargs=dict(SWIN_BASE)
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="roberta", init_kwargs=dict(ROBERTA_BASE)
        ),
    }
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "hidden_dim", "num_hidden_layers": "num_blocks"}
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    backbone_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_size: int = positive_multiple_of(32, default=480)  # the backbone's largest stride
    hidden_dim: int = positive_multiple_of(2, default=256)  # even: half the sine position channels are y
    mask_dim: int = interval(min=1)(default=256)
    num_queries: int = interval(min=1)(default=100)
    num_blocks: int = interval(min=1)(default=9)
    num_heads: int = interval(min=1)(default=8)
    ffn_dim: int = interval(min=1)(default=2048)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    pixel_decoder_layers: int = interval(min=1)(default=6)
    pixel_decoder_ffn_dim: int = interval(min=1)(default=1024)
    pixel_decoder_num_points: int = interval(min=1)(default=4)
    transformer_decoder: Decoder = "phrase_object"
    masked_attention: bool = True
    text_conditioned_score: bool = False
    deep_supervision: bool = True
    instance_supervision: InstanceSupervision = "phrase_aligned"
    aggregation: Aggregation = "aia_prelu"
    aggregation_threshold: float | int = probability(default=0.5)
    no_target_input: NoTargetInput = "global_and_sentence"
    lambda_score: float | int = interval(min=0.0)(default=2.0)
    lambda_mask: float | int = interval(min=0.0)(default=5.0)
    lambda_phrase: float | int = interval(min=0.0)(default=1.0)
    lambda_merged: float | int = interval(min=0.0)(default=5.0)
    lambda_inst: float | int = interval(min=0.0)(default=1.0)
    lambda_nt: float | int = interval(min=0.0)(default=0.1)
    init_std: float | int = 0.02

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges and choices are declared on the fields)."""
        super().validate_architecture()
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )


__all__ = ["InstAlignConfig"]
