"""ReLA (Liu, Ding, Jiang, "GRES: Generalized Referring Expression Segmentation", CVPR 2023, Sec. 3).

``RelaModel``: the BERT text encoder, the visual encoder (a language-aware Swin with pixel-word attention, or
a text-free ResNet-50) and Mask2Former's deformable pixel decoder. ``RelaForReferringSegmentation`` adds the
ReLA decoder with its minimap, target-mask and no-target heads (Sec. 3.2) and the loss of Sec. 3.3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...modeling.backbone import build_vision_backbone
from ...modeling.input_checks import (
    check_attention_mask,
    check_mask_labels,
    check_pixel_values,
    reject_unknown_kwargs,
)
from ...modeling.language_aware_swin import LanguageAwareSwinBackbone
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.outputs import ReferringSegmentationOutput
from ...modeling.pixel_decoder import MSDeformAttnPixelDecoder
from ...modeling.pixel_word_attention import LanguageGate
from ...modeling.text_encoder import build_text_encoder
from .configuration_rela import RelaConfig
from .criterion import ReLACriterion
from .region_decoder import RegionLanguageAttention, ReLADecoder


@dataclass
class RelaModelOutput(ModelOutput):
    """Output of :class:`RelaModel`.

    Args:
        text_features: ``(B, L, C_text)`` BERT's last hidden states, padding positions included.
        encoder_feature_maps: the 4 visual maps (strides 4 to 32), language-aware with ``encoder_fusion="pwam"``.
        mask_features: ``(B, mask_dim, H/4, W/4)`` the pixel decoder's per-pixel embeddings.
        multi_scale_features: its 3 maps ``(B, C, h, w)``, strides 32, 16, 8.
    """

    text_features: torch.Tensor | None = None
    encoder_feature_maps: tuple[torch.Tensor, ...] | None = None
    mask_features: torch.Tensor | None = None
    multi_scale_features: list[torch.Tensor] | None = None


@dataclass
class RelaOutput(ReferringSegmentationOutput):
    """Output of :class:`RelaForReferringSegmentation` (the shared fields, then ReLA's own).

    Args:
        semantic_mask_logits: ``(B, H/4, W/4)`` target minus background logit of the target mask.
        no_target_logits: ``(B,)`` no-target minus target logit.
        mask_logits: ``(B, 2, H/4, W/4)`` background / target logits (the original's ``pred_masks``).
        no_target_class_logits: ``(B, 2)`` target / no-target logits (the original's ``nt_label``; index 1 =
            nothing is referred to).
        minimap_logits: ``(B, P, 2)`` per region: does it hold the target (index 1)?
        region_mask_logits: ``(B, P, H/4, W/4)`` the mask of each region query.
        decoder_hidden_states: the region features ``(B, P, C)`` after each ReLA layer.
    """

    mask_logits: torch.Tensor | None = None
    no_target_class_logits: torch.Tensor | None = None
    minimap_logits: torch.Tensor | None = None
    region_mask_logits: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None


class RelaPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for the ReLA models.

    Initialisation follows the released code: Xavier-uniform attention and FFN matrices in the decoder,
    Mask2Former's pixel decoder init, closed language gates, zero language projection and weight.
    """

    config: RelaConfig
    config_class = RelaConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = ["MSDeformAttnPixelDecoder", "ReLALayer"]

    def _delegated_init_ids(self) -> set[int]:
        """Submodules initialised by their parent's ``reset_parameters`` (visited after them)."""
        return {
            id(sub)
            for parent in self.modules()
            if isinstance(parent, (MSDeformAttnPixelDecoder, LanguageGate))
            for sub in parent.modules()
            if sub is not parent
        }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if id(module) in self._delegated_init_ids():
            return
        if isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, (MSDeformAttnPixelDecoder, LanguageGate)):
            module.reset_parameters()
        elif isinstance(module, RegionLanguageAttention):
            init.zeros_(module.language_projection.weight)
            init.zeros_(module.language_weight)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _check_inputs(
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    mask_labels: list[torch.Tensor] | None,
) -> None:
    batch, height, width = check_pixel_values(pixel_values)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[0] != batch:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(
            f"input_ids must be a (B, L) tensor with one sentence per image (B = {batch}), got {shape}"
        )
    check_attention_mask(attention_mask, input_ids)
    if mask_labels is not None:
        check_mask_labels(mask_labels, batch, height, width)


class RelaModel(RelaPreTrainedModel):
    """Text encoder, visual encoder and deformable pixel decoder (Sec. 3.1)."""

    def __init__(self, config: RelaConfig) -> None:
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        if config.encoder_fusion == "pwam":
            # without SwinModel's unused final LayerNorm: the released Swin has none (same parameters)
            self.backbone = LanguageAwareSwinBackbone(
                config.backbone_config,
                self.text_encoder.hidden_size,
                gate_stages=config.pwam_gate_stages,
                final_layernorm=False,
            )
        else:
            self.backbone = build_vision_backbone(config.backbone_config)
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
        return_dict: bool | None = None,
    ) -> RelaModelOutput | tuple:
        """Encode the sentence and the image, and decode the multi-scale maps.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32.
            input_ids, attention_mask: ``(B, L)`` one sentence per image (1 = token, 0 = padding).
        """
        _check_inputs(pixel_values, input_ids, attention_mask, None)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_features = self.text_encoder(input_ids, attention_mask)
        if self.config.encoder_fusion == "pwam":
            maps = tuple(self.backbone(pixel_values, text_features, attention_mask))
        else:  # the released R-50 sees no language in its encoder
            maps = tuple(self.backbone(pixel_values))
        decoded = self.pixel_decoder(list(maps))
        output = RelaModelOutput(
            text_features=text_features,
            encoder_feature_maps=maps,
            mask_features=decoded.mask_features,
            multi_scale_features=decoded.multi_scale_features,
        )
        return output if return_dict else output.to_tuple()


class RelaForReferringSegmentation(RelaPreTrainedModel):
    """The ReLA decoder with its heads on :class:`RelaModel`, and the loss of Sec. 3.3."""

    def __init__(self, config: RelaConfig) -> None:
        super().__init__(config)
        self.model = RelaModel(config)
        self.decoder = ReLADecoder(
            hidden_dim=config.hidden_dim,
            mask_dim=config.mask_dim,
            text_dim=self.model.text_encoder.hidden_size,
            num_heads=config.num_heads,
            ffn_dim=config.decoder_ffn_dim,
            num_layers=config.decoder_layers,
            num_queries=config.num_queries,
            rla_weight=config.rla_weight,
            mask_mlp_layers=config.mask_mlp_layers,
            no_target_mlp_layers=config.no_target_mlp_layers,
            dropout=config.dropout,
        )
        self.criterion = ReLACriterion(
            lambda_mask=config.lambda_mask,
            lambda_minimap=config.lambda_minimap,
            lambda_no_target=config.lambda_no_target,
            class_weights=tuple(config.class_weights),
            minimap_size=config.minimap_size,
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RelaOutput | tuple:
        """Segment what the expression refers to and say whether it refers to anything.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32 (the processor resizes to 480x480).
            input_ids, attention_mask: ``(B, L)``, one sentence per image (1 = token, 0 = padding). The
                decoder's language attention reads every position, so pad every sentence to the same length
                (the processor pads to ``config.max_text_length``).
            mask_labels: optional list of ``B`` float ``{0, 1}`` tensors ``(n_b, H, W)``, one mask per referred
                instance (``n_b = 0``: no target). When given, ``loss`` and ``loss_dict`` are filled.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        _check_inputs(pixel_values, input_ids, attention_mask, mask_labels)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoded = self.model(pixel_values, input_ids, attention_mask, return_dict=True)
        decoded = self.decoder(encoded.multi_scale_features, encoded.mask_features, encoded.text_features)
        last = decoded.last

        loss, loss_dict = None, None
        if mask_labels is not None:
            loss, loss_dict = self.criterion(
                last.target_mask_logits, last.minimap_logits, last.no_target_logits, list(mask_labels)
            )
        masks, no_target = last.target_mask_logits, last.no_target_logits
        output = RelaOutput(
            loss=loss,
            loss_dict=loss_dict,
            semantic_mask_logits=masks[:, 1] - masks[:, 0],
            no_target_logits=no_target[:, 1] - no_target[:, 0],
            mask_logits=masks,
            no_target_class_logits=no_target,
            minimap_logits=last.minimap_logits,
            region_mask_logits=last.region_mask_logits,
            decoder_hidden_states=tuple(decoded.hidden_states),
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "RelaForReferringSegmentation",
    "RelaModel",
    "RelaModelOutput",
    "RelaOutput",
    "RelaPreTrainedModel",
]
