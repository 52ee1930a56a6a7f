"""InstanceVG (Dai et al., "Improving Generalized Visual Grounding with Instance-aware Joint Learning", Sec. 3).

``InstanceVGModel``: BEiT-3 joint encoder -> image / text projections ``F_i``, ``F_t`` -> SimpleFPN + UNet
(``S_global``, Sec. 3.1) and the Attention-based Point-prior Decoder (IQG + point-prior deformable decoder,
Sec. 3.2). ``InstanceVGForReferringSegmentation`` adds the heads (PIPH, Sec. 3.3; global mask and no-target
heads) and the training objective (Sec. 3.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...boxes import box_xyxy_to_cxcywh
from ...modeling.beit3 import Beit3Encoder
from ...modeling.deformable_attention import MultiScaleDeformableAttention
from ...modeling.input_checks import (
    check_image_text_inputs,
    check_mask_labels,
    check_values,
    reject_unknown_kwargs,
    shape_or_type,
)
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.outputs import ReferringSegmentationOutput
from .configuration_instancevg import InstanceVGConfig
from .criterion import InstanceVGCriterion, InstanceVGTargets, PointGuidedMatcher
from .heads import BoxHead, GlobalMaskHead, NoTargetHead, instance_mask_logits
from .instance_query_generator import InstanceQueryGenerator
from .point_prior_decoder import PointPriorDeformableDecoder
from .simple_fpn import SimpleFPN
from .unet_decoder import UNetDecoder


@dataclass
class InstanceVGModelOutput(ModelOutput):
    """Output of :class:`InstanceVGModel`.

    Args:
        decoder_states: ``Q_d`` of every decoder layer, each ``(B, N_q, C)`` (the last is the output).
        reference_points: ``p_r`` ``(B, N_q, 2)`` used by the deformable attention and the box head.
        prior_points: ``P_r`` ``(B, N_q, 2)`` chosen by the dynamic point selector, normalised ``(x, y)``.
        point_indices: their flat patch indices ``(B, N_q)``.
        minimap: ``M_s`` ``(B, h, w)``; attention_maps: ``M_attn`` ``(B, N_q, h, w)``.
        global_features: ``S_global`` ``(B, C, H/4, W/4)``.
        multi_scale_features: the four SimpleFPN levels (strides 4, 8, 16, 32).
        image_features: ``F_i`` ``(B, C, h, w)``; text_features: ``F_t`` ``(B, L, C)``.
        encoder_cls_token, encoder_image_tokens, encoder_text_tokens: BEiT-3 outputs.
    """

    decoder_states: list[torch.Tensor] | None = None
    reference_points: torch.Tensor | None = None
    prior_points: torch.Tensor | None = None
    point_indices: torch.Tensor | None = None
    minimap: torch.Tensor | None = None
    attention_maps: torch.Tensor | None = None
    global_features: torch.Tensor | None = None
    multi_scale_features: list[torch.Tensor] | None = None
    image_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    encoder_cls_token: torch.Tensor | None = None
    encoder_image_tokens: torch.Tensor | None = None
    encoder_text_tokens: torch.Tensor | None = None


@dataclass
class InstanceVGOutput(ReferringSegmentationOutput):
    """Output of :class:`InstanceVGForReferringSegmentation`: the shared fields of
    :class:`~refseg.modeling.outputs.ReferringSegmentationOutput`, then InstanceVG's own.

    The shared fields: ``loss`` is eq. 6 (when ``mask_labels`` are given) and ``loss_dict`` its terms;
    ``semantic_mask_logits`` ``(B, S, S)`` the global mask logits at the input resolution;
    ``no_target_logits`` ``(B,)`` ``-no_target_class_logits[:, 0]``: the released inference reads
    ``sigmoid(no_target_class_logits[:, 0])`` as P(target) (Sec. 3.5), so ``sigmoid(no_target_logits)`` is
    P(nothing referred to) as the released post-processing uses it (training uses a 2-way softmax);
    ``pred_masks`` ``(B, N_q, S, S)`` the instance mask logits at the input resolution; ``pred_scores``
    ``(B, N_q)`` the object-minus-no-object logit (``sigmoid`` = ``softmax(pred_class_logits)[..., 0]``);
    ``pred_boxes`` ``(B, N_q, 4)`` normalised ``(cx, cy, w, h)`` of the box head (Sec. 3.3).

    Args:
        pred_class_logits: ``(B, N_q, 2)`` (object, no object) of the last decoder layer.
        no_target_class_logits: ``(B, 2)`` (target, no target); the released post-processing weights the query
            scores by ``sigmoid(no_target_class_logits[:, 0])``.
        reference_points: ``(B, N_q, 2)`` the reference points ``p_r`` of the deformable decoder.
        prior_points: ``(B, N_q, 2)`` the prior points ``P_r`` of the dynamic point selector, normalised ``(x, y)``.
        minimap: ``(B, h, w)`` the minimap ``M_s``.
        attention_maps: ``(B, N_q, h, w)`` the text-to-image attention maps ``M_attn``.
        aux_outputs: ``pred_class_logits`` and ``pred_boxes`` of the earlier decoder layers.
    """

    pred_class_logits: torch.Tensor | None = None
    no_target_class_logits: torch.Tensor | None = None
    reference_points: torch.Tensor | None = None
    prior_points: torch.Tensor | None = None
    minimap: torch.Tensor | None = None
    attention_maps: torch.Tensor | None = None
    aux_outputs: list[dict[str, torch.Tensor]] | None = None


class InstanceVGPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for InstanceVG models.

    ``attn_implementation="sdpa"`` (the default) or ``"eager"`` (in ``from_pretrained`` or
    ``set_attn_implementation``) selects the attention kernel of the BEiT-3 encoder (``eager`` writes the
    softmax out, ``sdpa`` calls ``torch.nn.functional.scaled_dot_product_attention``); it is recorded in
    ``config._attn_implementation`` and its sub-configs. It does not change the text-to-image decoder's and
    the point-prior decoder's attention, which have one implementation. ``gradient_checkpointing_enable()``
    recomputes the BEiT-3 layers and the point-prior decoder layers in the backward pass.
    """

    config: InstanceVGConfig
    config_class = InstanceVGConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["PointPriorDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' defaults (normal(0, init_std) linears and convolutions, unit norms, PyTorch's attention
        init), BEiT-3's own init of the encoder, Deformable-DETR init of the deformable attention, and the box head's last bias ``[0, 0, -2, -2]``
        (small initial boxes, as the released code; ``apply`` visits the head after its layers)."""
        if isinstance(module, (MultiScaleDeformableAttention, Beit3Encoder)):
            module.reset_parameters()
        elif isinstance(module, BoxHead):
            last = module.layers[-1]
            init.copy_(last.bias, torch.tensor([0.0, 0.0, -2.0, -2.0], dtype=last.bias.dtype))
        else:
            super()._init_weights(module)


def _check_inputs(config: InstanceVGConfig, pixel_values: Any, input_ids: Any, attention_mask: Any) -> None:
    """The shared checks (the square ``config.image_size``, the encoder's text positions) and right padding."""
    check_image_text_inputs(
        pixel_values,
        input_ids,
        attention_mask,
        config.encoder_config.max_text_length,
        image_size=config.image_size,
    )
    if attention_mask is not None:
        valid = attention_mask.bool()
        check_values(
            ~(valid[:, 1:] & ~valid[:, :-1]).any(),
            "attention_mask must pad on the right (the text filter keeps the first tokens)",
        )


def _check_labels(config: InstanceVGConfig, batch: int, mask_labels: Any, box_labels: Any) -> None:
    """``mask_labels`` ``(n_b, S, S)`` and, when given, ``box_labels`` ``(n_b, 4)`` for each of ``batch`` samples."""
    size = config.image_size
    check_mask_labels(mask_labels, batch, size, size)
    if box_labels is not None:
        if not isinstance(box_labels, (list, tuple)) or len(box_labels) != batch:
            raise ValueError(f"box_labels must be a list of {batch} tensors (one per sample)")
        for b, (boxes, masks) in enumerate(zip(box_labels, mask_labels)):
            if not isinstance(boxes, torch.Tensor) or boxes.shape != (len(masks), 4):
                raise ValueError(
                    f"box_labels[{b}] must be a ({len(masks)}, 4) tensor of normalised (cx, cy, w, h), "
                    f"got {shape_or_type(boxes)}"
                )


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Normalised ``(cx, cy, w, h)`` ``(n, 4)`` of the tight boxes of ``(n, H, W)`` masks (pixel edges)."""
    n, height, width = masks.shape
    if n == 0:
        return masks.new_zeros(0, 4)
    present = masks > 0.5
    rows, cols = present.any(2), present.any(1)
    ar_h = torch.arange(height, device=masks.device)
    ar_w = torch.arange(width, device=masks.device)
    y0 = torch.where(rows, ar_h, height).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, width).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    xyxy = torch.stack([x0, y0, x1, y1], 1).float().clamp(min=0)
    xyxy = xyxy / torch.tensor([width, height, width, height], device=masks.device, dtype=torch.float32)
    return box_xyxy_to_cxcywh(xyxy).to(masks.dtype)


class InstanceVGModel(InstanceVGPreTrainedModel):
    """BEiT-3, projections, SimpleFPN + UNet and the Attention-based Point-prior Decoder (Sec. 3.1-3.2)."""

    def __init__(self, config: InstanceVGConfig) -> None:
        super().__init__(config)
        channels, width = config.hidden_channels, config.encoder_config.hidden_size
        self.encoder = Beit3Encoder(config.encoder_config)
        self.image_projection = nn.Conv2d(width, channels, 1, bias=False)
        self.text_projection = nn.Linear(width, channels, bias=False)
        self.simple_fpn = SimpleFPN(channels)
        self.unet_decoder = UNetDecoder(channels)
        self.query_generator = InstanceQueryGenerator(
            channels,
            config.num_queries,
            num_heads=config.t2i_num_heads,
            ffn_dim=config.t2i_ffn_dim,
            dropout=config.dropout,
            text_filter=config.text_filter,
            minimap_reduction=config.minimap_reduction,
            point_selection=config.point_selection,
            distance_weight=config.distance_weight,
            distance_normalization=config.distance_normalization,
        )
        self.decoder = PointPriorDeformableDecoder(
            channels,
            num_layers=config.decoder_layers,
            num_heads=config.decoder_num_heads,
            num_levels=4,
            num_points=config.decoder_num_points,
            ffn_dim=config.decoder_ffn_dim,
            dropout=config.dropout,
            point_prior=config.point_prior,
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> InstanceVGModelOutput | tuple:
        """Encode image and expression jointly and decode the instance queries.

        Args:
            pixel_values: ``(B, 3, S, S)`` with ``S = config.image_size``.
            input_ids: ``(B, L)``; attention_mask: ``(B, L)`` 1 for tokens, 0 for (right) padding.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        _check_inputs(self.config, pixel_values, input_ids, attention_mask)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        padding = attention_mask == 0
        encoded = self.encoder(pixel_values, input_ids, padding)
        batch, grid = pixel_values.shape[0], self.config.grid_size
        image = encoded.image_tokens.transpose(1, 2).reshape(batch, -1, grid, grid)
        image_features = self.image_projection(image)
        text_features = self.text_projection(encoded.text_tokens)
        levels = self.simple_fpn(image_features)
        global_features = self.unet_decoder(levels)
        generated = self.query_generator(image_features, text_features, padding)
        states, reference = self.decoder(generated.queries, generated.points, levels)
        output = InstanceVGModelOutput(
            decoder_states=states,
            reference_points=reference,
            prior_points=generated.points,
            point_indices=generated.point_indices,
            minimap=generated.minimap,
            attention_maps=generated.attention_maps,
            global_features=global_features,
            multi_scale_features=levels,
            image_features=image_features,
            text_features=text_features,
            encoder_cls_token=encoded.cls_token,
            encoder_image_tokens=encoded.image_tokens,
            encoder_text_tokens=encoded.text_tokens,
        )
        return output if return_dict else output.to_tuple()


class InstanceVGForReferringSegmentation(InstanceVGPreTrainedModel):
    """InstanceVG with its box, class, instance-mask, global-mask and no-target heads and the training loss."""

    def __init__(self, config: InstanceVGConfig) -> None:
        super().__init__(config)
        channels = config.hidden_channels
        self.model = InstanceVGModel(config)
        self.class_head = nn.Linear(channels, 2)
        self.box_head = BoxHead(channels)
        self.global_mask_head = GlobalMaskHead(channels)
        self.no_target_head = NoTargetHead(channels)
        self.criterion = InstanceVGCriterion(
            PointGuidedMatcher(config.cost_class, config.cost_bbox, config.cost_giou, config.cost_point),
            loss_class_weight=config.loss_class_weight,
            loss_bbox_weight=config.loss_bbox_weight,
            loss_giou_weight=config.loss_giou_weight,
            no_object_weight=config.no_object_weight,
            aux_loss_weighting=config.aux_loss_weighting,
            detr_loss_weight=config.detr_loss_weight,
            global_mask_loss_weight=config.global_mask_loss_weight,
            instance_mask_loss_weight=config.instance_mask_loss_weight,
            negative_mask_weight=config.negative_mask_weight,
            minimap_loss_weight=config.minimap_loss_weight,
            no_target_loss_weight=config.no_target_loss_weight,
            no_target_class_weights=tuple(config.no_target_class_weights),
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        box_labels: list[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> InstanceVGOutput | tuple:
        """Segment and box what the expression refers to.

        Args:
            pixel_values: ``(B, 3, S, S)``, ``S = config.image_size`` (320 for the released models).
            input_ids: ``(B, L)``; attention_mask: ``(B, L)`` (1 = token, 0 = right padding; default all ones).
            mask_labels: optional list of ``B`` float {0, 1} tensors ``(n_b, S, S)``, one per referred instance;
                ``n_b = 0`` marks a no-target sample. When given, ``loss`` and ``loss_dict`` are filled.
            box_labels: optional list of ``B`` tensors ``(n_b, 4)`` of normalised ``(cx, cy, w, h)`` target boxes
                (e.g. the dataset's boxes); default: the tight boxes of ``mask_labels``. Unused without
                ``mask_labels`` (evaluation loops may leave them in the batch).

        Raises:
            TypeError: for any other keyword argument (e.g. ``labels=`` instead of ``mask_labels=``).
            ValueError: for malformed inputs (checked once, by :class:`InstanceVGModel`) or labels.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # InstanceVGModel checks pixel_values, input_ids and attention_mask
        outputs = self.model(pixel_values, input_ids, attention_mask, return_dict=True)
        size = tuple(pixel_values.shape[-2:])
        class_logits = [self.class_head(s) for s in outputs.decoder_states]
        boxes = [self.box_head(s, outputs.reference_points) for s in outputs.decoder_states]
        pred_masks = instance_mask_logits(outputs.decoder_states[-1], outputs.global_features, size)
        semantic = self.global_mask_head(outputs.global_features, size)
        nt_logits = self.no_target_head(outputs.global_features)

        loss, loss_dict = None, None
        if mask_labels is not None:
            _check_labels(self.config, pixel_values.shape[0], mask_labels, box_labels)
            masks = [m.to(pred_masks) for m in mask_labels]
            if box_labels is None:
                box_labels = [boxes_from_masks(m) for m in masks]
            targets = InstanceVGTargets(masks=masks, boxes=[b.to(pred_masks) for b in box_labels])
            loss, loss_dict = self.criterion(
                class_logits,
                boxes,
                outputs.prior_points,
                pred_masks,
                semantic,
                outputs.minimap,
                nt_logits,
                targets,
            )

        last = class_logits[-1]
        output = InstanceVGOutput(
            loss=loss,
            loss_dict=loss_dict,
            pred_masks=pred_masks,
            pred_scores=last[..., 0] - last[..., 1],
            pred_boxes=boxes[-1],
            semantic_mask_logits=semantic,
            no_target_logits=-nt_logits[:, 0],
            pred_class_logits=last,
            no_target_class_logits=nt_logits,
            reference_points=outputs.reference_points,
            prior_points=outputs.prior_points,
            minimap=outputs.minimap,
            attention_maps=outputs.attention_maps,
            aux_outputs=[
                {"pred_class_logits": c, "pred_boxes": b} for c, b in zip(class_logits[:-1], boxes[:-1])
            ],
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "InstanceVGForReferringSegmentation",
    "InstanceVGModel",
    "InstanceVGModelOutput",
    "InstanceVGOutput",
    "InstanceVGPreTrainedModel",
    "boxes_from_masks",
]
