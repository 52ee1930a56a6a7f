"""The presence & plurality model (Kim, Lee, Kwak, AAAI 2026, Sec. 3).

``PresencePluralityModel``: BERT text encoder and language-aware Swin (Sec. 3.1, eq. 1) -> deformable pixel
decoder keeping its per-layer states (eq. 2). ``PresencePluralityForReferringSegmentation`` adds the per-pixel
mask head (Sec. 3.1), the target query with the plurality head (eq. 3) and the presence head (eq. 4), the loss
of eq. 5 and the presence gating of the mask at inference (Sec. 3.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...modeling.input_checks import (
    check_image_text_inputs,
    check_mask_labels,
    reject_unknown_kwargs,
    shape_or_type,
)
from ...modeling.language_aware_swin import LanguageAwareSwinBackbone
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.outputs import ReferringSegmentationOutput
from ...modeling.pixel_decoder import MSDeformAttnPixelDecoder, PixelDecoderOutput
from ...modeling.pixel_word_attention import LanguageGate
from ...modeling.text_encoder import build_text_encoder
from ...validation import text_position_limit
from .configuration_presence_plurality import PresencePluralityConfig
from .criterion import PresencePluralityCriterion
from .target_query import TargetQuery, TargetQueryCrossAttention, mlp

PADDING_LOGIT = -1e4  # mask logit written at letterbox padding in the sigmoid-style outputs


@dataclass
class PresencePluralityModelOutput(ModelOutput):
    """Output of :class:`PresencePluralityModel`.

    Args:
        mask_features: ``(B, mask_dim, H/4, W/4)``: ``f^{M,2}_L`` upsampled and summed with ``F^{M,1}`` (Sec. 3.1).
        decoder_hidden_states: ``f_0 .. f_L`` ``(B, S, C)`` of the pixel decoder (eq. 2), low resolution first.
        decoder_position_embeddings: ``(B, S, C)`` sine + level embeddings of those tokens.
        decoder_padding_mask: ``(B, S)`` True at letterbox padding, or ``None``.
        decoder_spatial_shapes: ``(h, w)`` of the 3 levels, low resolution first (strides 32, 16, 8).
        decoder_level_start_index: first token of each level.
        text_features: ``f^T`` ``(B, T, C_text)``.
        encoder_feature_maps: the 4 language-aware maps ``F^{M,i}`` (eq. 1).
    """

    mask_features: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_position_embeddings: torch.Tensor | None = None
    decoder_padding_mask: torch.Tensor | None = None
    decoder_spatial_shapes: list[tuple[int, int]] | None = None
    decoder_level_start_index: list[int] | None = None
    text_features: torch.Tensor | None = None
    encoder_feature_maps: tuple[torch.Tensor, ...] | None = None


@dataclass
class PresencePluralityOutput(ReferringSegmentationOutput):
    """Output of :class:`PresencePluralityForReferringSegmentation`: the shared fields of
    :class:`~refseg.modeling.outputs.ReferringSegmentationOutput`, then the model's own.

    The shared fields: ``loss`` is eq. 5 (when ``mask_labels`` are given) and ``loss_dict`` its terms;
    ``semantic_mask_logits`` ``(B, H, W)`` the foreground-minus-background logit at the input resolution
    (``sigmoid`` = the softmax foreground probability), ``PADDING_LOGIT`` at letterbox padding;
    ``no_target_logits`` ``(B,)`` the absent-minus-present logit of the presence head (eq. 4); ``pred_masks``
    ``(B, 1, H, W)`` and ``pred_scores`` ``(B, 1)`` the single target as one "instance" (the semantic logits and
    the present-minus-absent logit); ``pred_boxes`` is ``None`` (no box head).

    Args:
        logits: ``(B, 2, H, W)`` ``Y_hat``, the background/foreground mask logits at the input resolution.
        presence_logits: ``(B, 2)`` ``y_hat_pr`` absent/present (eq. 4).
        plurality_logits: ``(B, 2)`` ``y_hat_pl`` single/multiple (eq. 3); ``None`` without the plurality head.
        no_target: ``(B,)`` bool, presence probability below ``config.presence_threshold`` (Sec. 3.4).
        final_masks: ``(B, H, W)`` bool, foreground probability above ``config.mask_threshold``, emptied where
            ``no_target`` (Sec. 3.4).
        target_query_states: ``(L + 1, B, C)``: ``e_0`` (eq. 3) then ``e_1 .. e_L`` (eq. 4); ``None`` without the
            target query.
    """

    logits: torch.Tensor | None = None
    presence_logits: torch.Tensor | None = None
    plurality_logits: torch.Tensor | None = None
    no_target: torch.Tensor | None = None
    final_masks: torch.Tensor | None = None
    target_query_states: torch.Tensor | None = None


class PresencePluralityPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for the presence & plurality models.

    ``attn_implementation="sdpa"`` (the default) or ``"eager"`` (in ``from_pretrained`` or
    ``set_attn_implementation``) selects the attention kernel of the Swin backbone and the BERT text encoder;
    it is recorded in ``config._attn_implementation`` and its sub-configs. It does not change the pixel-word
    attention, the deformable pixel decoder and the target query's attention, which have one implementation.
    ``gradient_checkpointing_enable()`` recomputes the Swin and BERT layers, the pixel decoder's encoder
    layers and the target query's cross-attention layers in the backward pass.
    """

    config: PresencePluralityConfig
    config_class = PresencePluralityConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = ["MSDeformAttnPixelDecoder", "TargetQueryCrossAttention"]

    def _delegated_init_ids(self) -> set[int]:
        """Submodules of the pixel decoder and of the language gates: their parents' ``reset_parameters`` set
        them (the deformable-attention grid, closed gates), and the first initialisation of a tensor wins, so
        the generic branches must not touch them first (children are visited before parents)."""
        return {
            id(sub)
            for parent in self.modules()
            if isinstance(parent, (MSDeformAttnPixelDecoder, LanguageGate))
            for sub in parent.modules()
            if sub is not parent
        }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) linears and convs, N(0, 1) embeddings (the target query), Xavier attention
        projections, Mask2Former init of the pixel decoder, closed language gates. The Swin and BERT sub-models
        are initialised by their own ``_init_weights``."""
        if id(module) in self._delegated_init_ids():
            return  # initialised by its parent's reset_parameters below
        std = self.config.init_std
        if isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, MSDeformAttnPixelDecoder):
            module.reset_parameters()
        elif isinstance(module, LanguageGate):
            module.reset_parameters()
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _check_inputs(
    config: PresencePluralityConfig,
    pixel_values: Any,
    input_ids: Any,
    attention_mask: Any,
    pixel_mask: Any,
) -> None:
    """The shared checks, and a ``pixel_mask`` ``(B, H, W)`` when given."""
    batch, height, width = check_image_text_inputs(
        pixel_values, input_ids, attention_mask, text_position_limit(config.text_config)
    )
    if pixel_mask is not None and (
        not isinstance(pixel_mask, torch.Tensor) or tuple(pixel_mask.shape) != (batch, height, width)
    ):
        raise ValueError(
            f"pixel_mask must be (B, H, W) = {(batch, height, width)}, got {shape_or_type(pixel_mask)}"
        )


class PresencePluralityModel(PresencePluralityPreTrainedModel):
    """Text encoder, language-aware Swin and deformable pixel decoder (Sec. 3.1, eq. 1-2)."""

    def __init__(self, config: PresencePluralityConfig) -> None:
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        self.backbone = LanguageAwareSwinBackbone(
            config.backbone_config,
            self.text_encoder.hidden_size,
            fusion=config.encoder_fusion,
            gate_stages=config.pwam_gate_stages,
        )
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels=self.backbone.channels,
            hidden_dim=config.hidden_dim,
            mask_dim=config.mask_dim,
            num_layers=config.pixel_decoder_layers,
            num_heads=config.num_heads,
            num_points=config.pixel_decoder_num_points,
            ffn_dim=config.pixel_decoder_ffn_dim,
            dropout=config.dropout,
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> PresencePluralityModelOutput | tuple:
        """Encode the sentence, the image conditioned on it, and decode the multi-scale maps.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32.
            input_ids, attention_mask: ``(B, T)`` one sentence per image (1 = token, 0 = padding).
            pixel_mask: ``(B, H, W)``, 1 for image pixels and 0 for letterbox padding.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        _check_inputs(self.config, pixel_values, input_ids, attention_mask, pixel_mask)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_features = self.text_encoder(input_ids, attention_mask)
        maps = self.backbone(pixel_values, text_features, attention_mask)
        decoded: PixelDecoderOutput = self.pixel_decoder(list(maps), pixel_mask, output_hidden_states=True)
        output = PresencePluralityModelOutput(
            mask_features=decoded.mask_features,
            decoder_hidden_states=decoded.hidden_states,
            decoder_position_embeddings=decoded.position_embeddings,
            decoder_padding_mask=decoded.padding_mask,
            decoder_spatial_shapes=decoded.spatial_shapes,
            decoder_level_start_index=decoded.level_start_index,
            text_features=text_features,
            encoder_feature_maps=maps,
        )
        return output if return_dict else output.to_tuple()


class PresencePluralityForReferringSegmentation(PresencePluralityPreTrainedModel):
    """Mask head, target query with presence and plurality heads, eq. 5 and presence-gated inference."""

    def __init__(self, config: PresencePluralityConfig) -> None:
        super().__init__(config)
        self.model = PresencePluralityModel(config)
        hidden = config.hidden_dim
        self.mask_head = mlp(config.mask_dim, config.mask_dim, 2, config.mask_mlp_layers)
        self.presence_head = mlp(hidden, hidden, 2, config.head_mlp_layers)
        if config.use_target_query:
            self.target_query = TargetQuery(
                hidden,
                self.model.text_encoder.hidden_size,
                config.pixel_decoder_layers,
                config.num_heads,
                config.target_query_ffn_dim,
                config.dropout,
            )
        self.plurality_head = mlp(hidden, hidden, 2, config.head_mlp_layers) if config.use_plurality else None
        self.criterion = PresencePluralityCriterion(
            lambda_pixel=config.lambda_pixel,
            lambda_presence=config.lambda_presence,
            lambda_plurality=config.lambda_plurality,
            pixel_class_weights=tuple(config.pixel_class_weights),
            presence_class_weights=tuple(config.presence_class_weights),
            use_plurality=config.use_plurality,
            ignore_no_target=config.plurality_ignore_no_target,
            lambda_dice=config.lambda_dice,
        )
        self.post_init()

    def presence_inputs(
        self, outputs: PresencePluralityModelOutput
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """The ``L`` pixel-decoder slices eq. 4 reads (``f^{M,level}_{l-1}``, or ``f_l`` with offset 1), their
        position embeddings and padding mask."""
        level = 4 - self.config.presence_feature_level  # decoder levels are low resolution first
        start = outputs.decoder_level_start_index[level]
        height, width = outputs.decoder_spatial_shapes[level]
        span = slice(start, start + height * width)
        offset = self.config.presence_feature_offset
        states = outputs.decoder_hidden_states[offset : offset + self.config.pixel_decoder_layers]
        padding = outputs.decoder_padding_mask
        return (
            [state[:, span] for state in states],
            outputs.decoder_position_embeddings[:, span],
            None if padding is None else padding[:, span],
        )

    def mask_logits(self, mask_features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``Y_hat`` ``(B, 2, H, W)``: the MLP on the upsampled mask features (Sec. 3.1), or, without
        ``mask_head_at_full_resolution``, the MLP at stride 4 with the logits upsampled."""
        if self.config.mask_head_at_full_resolution:
            # The MLP's first layer is affine and bilinear upsampling is a convex combination of pixels (its
            # weights sum to 1), so the two commute: projecting at stride 4 and then upsampling computes the same
            # map as upsampling first, with 16x fewer multiply-adds. The map stays channels-last, so the layers
            # after the upsampling read it without a copy (the MLP's ReLU is in place).
            first, *rest = self.mask_head
            projected = first(mask_features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            hidden = F.interpolate(projected, size=size, mode="bilinear", align_corners=False)
            hidden = hidden.permute(0, 2, 3, 1)
            for layer in rest:
                hidden = layer(hidden)
            return hidden.permute(0, 3, 1, 2)
        logits = self.mask_head(mask_features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> PresencePluralityOutput | tuple:
        """Segment what the expression refers to, say whether anything is referred to and whether several are.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32 (the processor letterboxes to 480x480).
            input_ids, attention_mask: ``(B, T)``, one sentence per image (1 = token, 0 = padding).
            pixel_mask: ``(B, H, W)``, 1 for image pixels and 0 for letterbox padding: padded tokens are not
                attended to by the pixel decoder and the target query, and padded pixels get no loss.
            mask_labels: optional list of ``B`` float ``{0, 1}`` tensors ``(n_b, H, W)``, one mask per referred
                instance at the ``pixel_values`` resolution (``n_b = 0``: no target; ``n_b >= 2``: plural). When
                given, ``loss`` and ``loss_dict`` are filled (eq. 5).

        Raises:
            TypeError: for any other keyword argument (e.g. ``labels=`` instead of ``mask_labels=``).
            ValueError: for malformed inputs (checked once, by :class:`PresencePluralityModel`) or ``mask_labels``.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # PresencePluralityModel checks pixel_values, input_ids, attention_mask and pixel_mask
        outputs = self.model(pixel_values, input_ids, attention_mask, pixel_mask, return_dict=True)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        size = tuple(pixel_values.shape[-2:])
        logits = self.mask_logits(outputs.mask_features, size)

        plurality_logits, states = None, None
        if self.config.use_target_query:
            memories, position, padding = self.presence_inputs(outputs)
            query = self.target_query(outputs.text_features, attention_mask, memories, position, padding)
            presence_logits = self.presence_head(query.visual_states[-1])  # e_L (eq. 4)
            if self.plurality_head is not None:
                plurality_logits = self.plurality_head(query.text_state)  # e_0 (eq. 3)
            states = query.states
        else:  # Table 2 baseline: presence from the (valid) mask features
            features = outputs.mask_features
            if pixel_mask is None:
                pooled = features.mean(dim=(2, 3))
            else:
                valid = F.interpolate(
                    pixel_mask[:, None].to(features.dtype), size=features.shape[-2:], mode="nearest"
                )
                pooled = (features * valid).sum(dim=(2, 3)) / valid.sum(dim=(2, 3)).clamp(min=1.0)
            presence_logits = self.presence_head(pooled)

        loss, loss_dict = None, None
        if mask_labels is not None:
            check_mask_labels(mask_labels, len(pixel_values), *size)
            loss, loss_dict = self.criterion(
                logits, presence_logits, plurality_logits, list(mask_labels), pixel_mask
            )

        semantic = logits[:, 1] - logits[:, 0]
        if pixel_mask is not None:
            semantic = semantic.masked_fill(pixel_mask < 0.5, PADDING_LOGIT)
        present_score = presence_logits[:, 1] - presence_logits[:, 0]
        no_target = presence_logits.softmax(-1)[:, 1] < self.config.presence_threshold
        final_masks = (semantic.sigmoid() > self.config.mask_threshold) & ~no_target[:, None, None]
        output = PresencePluralityOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits,
            presence_logits=presence_logits,
            plurality_logits=plurality_logits,
            semantic_mask_logits=semantic,
            no_target_logits=-present_score,
            no_target=no_target,
            final_masks=final_masks,
            pred_masks=semantic[:, None],
            pred_scores=present_score[:, None],
            target_query_states=states,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "PresencePluralityForReferringSegmentation",
    "PresencePluralityModel",
    "PresencePluralityModelOutput",
    "PresencePluralityOutput",
    "PresencePluralityPreTrainedModel",
    "TargetQueryCrossAttention",
]
