"""METRIS ("METRIS: Multi-Expressions for Transformer-based Referring Image Segmentation", Sec. 3).

``MetrisModel``: Swin (optionally language-aware) + BERT encoders (Sec. 3.1), enhanced linguistic tokens and
the Visual Expression Extractor (Sec. 3.2), and the segmentation decoder guided by the guidance set
(Sec. 3.3). ``MetrisForReferringSegmentation`` adds the mask projection, the no-target classifier for
gRefCOCO (App. A) and the losses (Sec. 3.3, eq. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...modeling.input_checks import (
    check_image_text_inputs,
    check_mask_labels,
    check_values,
    reject_unknown_kwargs,
)
from ...modeling.language_aware_swin import LanguageAwareSwinBackbone
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.outputs import ReferringSegmentationOutput
from ...modeling.pixel_word_attention import LanguageGate
from ...modeling.position_encoding import SinePositionEmbedding
from ...modeling.text_encoder import build_text_encoder
from ...validation import text_position_limit
from .configuration_metris import MetrisConfig
from .criterion import no_target_loss, segmentation_loss
from .linguistic_enhancement import LinguisticExpressionEnhancer
from .no_target import NoTargetClassifier
from .pixel_contrastive_loss import PixelContrastiveLoss
from .segmentation_decoder import GuidedSegmentationDecoder
from .visual_expression_extractor import VisualExpressionExtractor


@dataclass
class MetrisModelOutput(ModelOutput):
    """Output of :class:`MetrisModel`.

    Args:
        decoder_features: (B, C_dec, H/4, W/4), the last decoder map.
        language_expression: the linguistic tokens of the guidance set, ``Q_L_hat`` (or ``Q_L`` for
            ``guidance="pure_le"``) (B, L, D).
        visual_expression: ``Q_V_hat`` (B, L, D) (eq. 7); ``None`` when the guidance set has no visual expression.
        relevance_scores: ``S_c`` (B, L, N) (eq. 2); ``None`` without the extractor.
        curated_mask: ``E`` as bool (B, L, N), True at curated vision tokens (eq. 2-3); ``None`` without it.
        grid_size: ``(H/32, W/32)``, the grid of the ``N`` vision tokens.
        guidance_padding_mask: (B, K) bool, True for guidance tokens that are masked (padding, unused cues).
        refinement_attentions: per-head weights (B, heads, L, N) of eq. 6 when ``output_attentions``.
        decoder_attentions: per-head weights (B, heads, h*w, K) of the 4 decoder stages (strides 32 to 4)
            when ``output_attentions``.
    """

    decoder_features: torch.Tensor | None = None
    language_expression: torch.Tensor | None = None
    visual_expression: torch.Tensor | None = None
    relevance_scores: torch.Tensor | None = None
    curated_mask: torch.Tensor | None = None
    grid_size: tuple[int, int] | None = None
    guidance_padding_mask: torch.Tensor | None = None
    refinement_attentions: torch.Tensor | None = None
    decoder_attentions: list[torch.Tensor] | None = None


@dataclass
class MetrisOutput(ReferringSegmentationOutput):
    """Output of :class:`MetrisForReferringSegmentation`: the shared fields of
    :class:`~refseg.modeling.outputs.ReferringSegmentationOutput`, then METRIS's own.

    The shared fields: ``loss`` is ``lambda_seg L_seg + lambda_cl L_cl + lambda_nt L_nt`` (when ``mask_labels``
    are given) and ``loss_dict`` its unweighted terms (``loss_seg``, and ``loss_cl`` / ``loss_nt`` when they
    apply); ``semantic_mask_logits`` ``(B, H/4, W/4)`` the foreground logits (``sigmoid`` is the foreground
    probability; for the 2-class head the logit difference, so that it equals the softmax);
    ``no_target_logits`` ``(B,)`` the no-target classifier's no-target-minus-target logit (App. A), ``-inf``
    without the classifier. METRIS has no instance queries and no box head: ``pred_masks``, ``pred_scores``
    and ``pred_boxes`` are ``None``.

    Args:
        mask_logits: ``(B, 2, H/4, W/4)`` class logits (``mask_loss="ce"``) or ``(B, 1, H/4, W/4)``.
        contrastive_logits: ``(B, H/32, W/32)`` ``s / tau`` of eq. 4 on the vision grid, when the loss is used.
        relevance_scores: ``(B, L, N)`` ``S_c`` (eq. 2); ``None`` without the extractor.
        curated_mask: ``(B, L, N)`` bool ``E``, True at curated vision tokens (eq. 2-3); ``None`` without it.
        visual_expression: ``(B, L, D)`` ``Q_V_hat`` (eq. 7); ``None`` without a visual expression.
        language_expression: ``(B, L, D)`` the linguistic tokens of the guidance set, ``Q_L_hat`` (or ``Q_L``).
        refinement_attentions: ``(B, heads, L, N)`` the weights of eq. 6 when ``output_attentions``.
        decoder_attentions: ``(B, heads, h*w, K)`` for each of the 4 decoder stages (strides 32 to 4) when
            ``output_attentions``.
    """

    mask_logits: torch.Tensor | None = None
    contrastive_logits: torch.Tensor | None = None
    relevance_scores: torch.Tensor | None = None
    curated_mask: torch.Tensor | None = None
    visual_expression: torch.Tensor | None = None
    language_expression: torch.Tensor | None = None
    refinement_attentions: torch.Tensor | None = None
    decoder_attentions: list[torch.Tensor] | None = None


class MetrisPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for METRIS models.

    ``attn_implementation="sdpa"`` (the default) or ``"eager"`` (in ``from_pretrained`` or
    ``set_attn_implementation``) selects the attention kernel of the Swin backbone and the BERT text encoder;
    it is recorded in ``config._attn_implementation`` and its sub-configs. It does not change the visual
    expression extractor's and the segmentation decoder's attention, which have one implementation.
    ``gradient_checkpointing_enable()`` recomputes the Swin and BERT layers and METRIS's attention layers
    (linguistic enhancement, visual expression extractor, decoder stages) in the backward pass.
    """

    config: MetrisConfig
    config_class = MetrisConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Xavier attention projections, Normal(0, init_std) linears and convs, unit norms, ``tau = tau_init``.

        The Swin and BERT sub-models are initialised by their own ``_init_weights``."""
        std = self.config.init_std
        if isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                init.xavier_uniform_(module.in_proj_weight)
            else:
                for weight in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight):
                    init.xavier_uniform_(weight)
            init.zeros_(module.in_proj_bias)
            init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, PixelContrastiveLoss):
            init.constant_(module.tau, self.config.tau_init)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _check_inputs(config: MetrisConfig, pixel_values: Any, input_ids: Any, attention_mask: Any) -> None:
    """The shared checks, and a valid first token (the [CLS] global cue) in every sentence."""
    check_image_text_inputs(pixel_values, input_ids, attention_mask, text_position_limit(config.text_config))
    if attention_mask is not None and input_ids.shape[1]:
        check_values(
            attention_mask[:, 0].bool().all(),
            "the first token of every expression ([CLS], the global cue) must be valid in attention_mask",
        )


class MetrisModel(MetrisPreTrainedModel):
    """Encoders, enhanced linguistic tokens, Visual Expression Extractor and guided decoder (Sec. 3.1-3.3)."""

    def __init__(self, config: MetrisConfig) -> None:
        super().__init__(config)
        dim = config.hidden_size
        self.text_encoder = build_text_encoder(config.text_config)
        self.backbone = LanguageAwareSwinBackbone(
            config.backbone_config, text_hidden_size=dim, fusion=config.encoder_fusion
        )
        channels = list(self.backbone.channels)
        guidance = config.guidance
        self.vision_projection = (
            nn.Sequential(nn.Linear(channels[3], dim), nn.LayerNorm(dim)) if guidance != "pure_le" else None
        )
        self.enhancer = (
            LinguisticExpressionEnhancer(
                dim, config.num_enhance_layers, config.num_heads, config.ffn_dim, config.dropout
            )
            if guidance != "pure_le"
            else None
        )
        self.visual_expression_extractor = (
            VisualExpressionExtractor(
                dim,
                config.joint_dim,
                config.num_heads,
                config.ffn_dim,
                config.dropout,
                curation_ratio=config.curation_ratio,
                curation=config.curation,
                adaptive_refinement=config.adaptive_refinement,
                relationship_modeling=config.relationship_modeling,
                dynamic_mask_in_aggregation=config.dynamic_mask_in_aggregation,
                aggregate_mean_scale=config.aggregate_mean_scale,
            )
            if config.uses_visual_expression
            else None
        )
        self.decoder = GuidedSegmentationDecoder(
            channels,
            config.decoder_hidden_dim,
            dim,
            config.num_heads,
            config.ffn_dim,
            config.dropout,
            position_encoding=config.position_encoding,
        )
        # beyond the paper: where each stride-32 vision token is (config.position_encoding)
        self.position_embedding = (
            SinePositionEmbedding(dim // 2)
            if config.position_encoding and self.vision_projection is not None
            else None
        )
        self.post_init()
        # transformers skips parameter-free container modules such as LanguageGate in `_init_weights` for models
        # defined outside the library, so the gates are closed here, after the generic init of their linears
        for gate in self.modules():
            if isinstance(gate, LanguageGate):
                gate.reset_parameters()

    def cue_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Bool (B, L): the extractor's cues, the valid tokens restricted by ``use_global_cue`` (the [CLS]
        token) and ``use_local_cues`` (every other token, [SEP] included) (Table 6b)."""
        cues = attention_mask.bool().clone()
        if not self.config.use_global_cue:
            cues[:, 0] = False
        if not self.config.use_local_cues:
            cues[:, 1:] = False
        return cues

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MetrisModelOutput | tuple:
        """Encode the image and the expression, build the guidance set and decode.

        Args:
            pixel_values: (B, 3, H, W), H and W multiples of 32.
            input_ids: (B, L), [CLS] first; attention_mask: (B, L) 1 for tokens, 0 for padding.
            output_attentions: return the attention weights of eq. 6 and of the decoder stages.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        _check_inputs(self.config, pixel_values, input_ids, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        text_tokens = self.text_encoder(input_ids, attention_mask)  # Q_L (Sec. 3.1)
        features = list(self.backbone(pixel_values, text_tokens, attention_mask))  # F_1..F_4
        grid_size = tuple(features[3].shape[-2:])
        padding = ~attention_mask.bool()

        language, visual, extracted = text_tokens, None, None
        vision_tokens = None
        if self.vision_projection is not None:
            vision_tokens = self.vision_projection(features[3].flatten(2).transpose(1, 2))  # F_v (B, N, D)
            if self.position_embedding is not None:
                vision_tokens = vision_tokens + self.position_embedding(features[3]).flatten(2).transpose(
                    1, 2
                )
            language = self.enhancer(text_tokens, vision_tokens)  # Q_L_hat
        cues = None
        if self.visual_expression_extractor is not None:
            cues = self.cue_mask(attention_mask)
            extracted = self.visual_expression_extractor(
                vision_tokens, language, cues, return_attention=output_attentions
            )
            visual = extracted.visual_expression

        guidance_kind = config.guidance  # Table 5
        if guidance_kind in ("pure_le", "enhanced_le"):
            guidance, guidance_padding = language, padding
        elif guidance_kind == "ve":
            guidance, guidance_padding = visual, ~cues
        elif guidance_kind == "enhanced_le_all_pixels":
            no_padding = padding.new_zeros(vision_tokens.shape[:2])
            guidance = torch.cat([language, vision_tokens], dim=1)
            guidance_padding = torch.cat([padding, no_padding], dim=1)
        else:  # full
            guidance = torch.cat([language, visual], dim=1)
            guidance_padding = torch.cat([padding, ~cues], dim=1)
        decoded, decoder_attentions = self.decoder(
            features, guidance, guidance_padding, return_attention=output_attentions
        )
        output = MetrisModelOutput(
            decoder_features=decoded,
            language_expression=language,
            visual_expression=visual,
            relevance_scores=extracted.relevance if extracted is not None else None,
            curated_mask=extracted.curated if extracted is not None else None,
            grid_size=grid_size,
            guidance_padding_mask=guidance_padding,
            refinement_attentions=extracted.refinement_attention if extracted is not None else None,
            decoder_attentions=decoder_attentions,
        )
        return output if return_dict else output.to_tuple()


class MetrisForReferringSegmentation(MetrisPreTrainedModel):
    """METRIS with the mask projection, the no-target classifier (gRefCOCO) and the training losses."""

    def __init__(self, config: MetrisConfig) -> None:
        super().__init__(config)
        self.model = MetrisModel(config)
        num_classes = 2 if config.mask_loss == "ce" else 1
        self.mask_head = nn.Conv2d(config.decoder_hidden_dim, num_classes, 1)  # "a linear projection layer"
        self.no_target_classifier = (
            NoTargetClassifier(config.decoder_hidden_dim, config.no_target_hidden_dim)
            if config.no_target_head
            else None
        )
        self.pixel_contrastive_loss = (
            PixelContrastiveLoss(config.tau_init, config.tau_min)
            if config.uses_visual_expression and config.use_contrastive_loss
            else None
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MetrisOutput | tuple:
        """Segment what the expression refers to.

        Args:
            pixel_values: (B, 3, H, W), H and W multiples of 32.
            input_ids: (B, L) with [CLS] first; attention_mask: (B, L) (1 = token, 0 = padding; default all ones).
            mask_labels: optional list of B float {0, 1} tensors (n_b, H, W), the referred instances at the
                ``pixel_values`` resolution (``n_b = 0``: no target). Their union is the mask target; with it
                ``loss`` and ``loss_dict`` are filled.
            output_attentions: return the attention weights of eq. 6 and of the decoder stages.

        Raises:
            TypeError: for any other keyword argument (e.g. ``labels=`` instead of ``mask_labels=``).
            ValueError: for malformed inputs (checked once, by :class:`MetrisModel`) or ``mask_labels``.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        # MetrisModel checks pixel_values, input_ids and attention_mask
        outputs = self.model(pixel_values, input_ids, attention_mask, output_attentions, return_dict=True)
        mask_logits = self.mask_head(outputs.decoder_features)
        if mask_logits.shape[1] == 2:
            semantic = mask_logits[:, 1] - mask_logits[:, 0]
        else:
            semantic = mask_logits[:, 0]
        batch = pixel_values.shape[0]
        if self.no_target_classifier is not None:
            two_way = self.no_target_classifier(outputs.decoder_features)
            no_target_logits = two_way[:, 1] - two_way[:, 0]
        else:
            two_way = None
            no_target_logits = semantic.new_full((batch,), float("-inf"))
        contrastive_logits = None
        if self.pixel_contrastive_loss is not None:
            contrastive_logits = self.pixel_contrastive_loss.logits(
                outputs.relevance_scores[:, 0], outputs.grid_size
            )  # the global ([CLS]) row of S_c

        loss, loss_dict = None, None
        if mask_labels is not None:
            check_mask_labels(mask_labels, batch, *pixel_values.shape[-2:])
            size = tuple(pixel_values.shape[-2:])
            targets = torch.stack([m.amax(dim=0) if len(m) else m.new_zeros(size) for m in mask_labels]).to(
                semantic.device
            )
            targets = (targets > 0.5).to(semantic.dtype)
            loss_dict = {
                "loss_seg": segmentation_loss(
                    mask_logits, targets, config.mask_loss, config.seg_class_weights, config.lambda_dice
                )
            }
            loss = config.lambda_seg * loss_dict["loss_seg"]
            if contrastive_logits is not None:
                loss_dict["loss_cl"] = self.pixel_contrastive_loss(contrastive_logits, targets)
                loss = loss + config.lambda_cl * loss_dict["loss_cl"]
            if two_way is not None:
                is_empty = torch.tensor([len(m) == 0 for m in mask_labels], device=two_way.device)
                loss_dict["loss_nt"] = no_target_loss(two_way, is_empty, config.no_target_class_weights)
                loss = loss + config.lambda_nt * loss_dict["loss_nt"]

        output = MetrisOutput(
            loss=loss,
            loss_dict=loss_dict,
            semantic_mask_logits=semantic,
            no_target_logits=no_target_logits,
            mask_logits=mask_logits,
            contrastive_logits=contrastive_logits,
            relevance_scores=outputs.relevance_scores,
            curated_mask=outputs.curated_mask,
            visual_expression=outputs.visual_expression,
            language_expression=outputs.language_expression,
            refinement_attentions=outputs.refinement_attentions,
            decoder_attentions=outputs.decoder_attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "MetrisModel",
    "MetrisPreTrainedModel",
    "MetrisForReferringSegmentation",
    "MetrisOutput",
    "MetrisModelOutput",
]
