"""InstAlign (Nguyen et al., "Instance-Aware Generalized Referring Expression Segmentation", Sec. 3).

``InstAlignModel``: Swin backbone + RoBERTa text encoder (Sec. 3.2) -> Mask2Former pixel decoder -> ``K``
Phrase-Object Transformer blocks with the prediction heads (Sec. 3.3-3.4).
``InstAlignForReferringSegmentation`` adds Adaptive Instance Aggregation (Sec. 3.5), the no-target predictor
(Sec. 3.6) and the training objective (Sec. 3.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...modeling.backbone import build_vision_backbone
from ...modeling.input_checks import check_image_text_inputs, check_mask_labels, reject_unknown_kwargs
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.outputs import ReferringSegmentationOutput
from ...modeling.pixel_decoder import MSDeformAttnPixelDecoder
from ...modeling.text_encoder import build_text_encoder
from ...validation import text_position_limit
from .aggregation import AdaptiveInstanceAggregation
from .configuration_instalign import InstAlignConfig
from .criterion import InstAlignCriterion
from .no_target import NoTargetPredictor
from .object_text_attention import ObjectTextCrossAttention
from .phrase_object_transformer import (
    PhraseObjectPrediction,
    PhraseObjectTransformer,
    PhraseObjectTransformerBlock,
)


@dataclass
class InstAlignModelOutput(ModelOutput):
    """Output of :class:`InstAlignModel`.

    Args:
        pred_masks: ``(B, N, H/4, W/4)`` instance mask logits of the last block (eq. 4).
        pred_scores: ``(B, N)`` relevance logits (``sigmoid`` gives ``p_hat``).
        queries: ``Q_K`` ``(B, N, C)``.
        text_features: ``T_K`` ``(B, L, C)``.
        phrase_relevance: ``R_K`` ``(B, N, L)`` (eq. 1).
        phrase_cost: ``L_phrase`` ``(B, N)`` (eq. 3).
        mask_features: ``V_4`` ``(B, C_mask, H/4, W/4)``.
        intermediate_predictions: the ``K + 1`` :class:`PhraseObjectPrediction` (learned queries, then each block).
    """

    pred_masks: torch.Tensor | None = None
    pred_scores: torch.Tensor | None = None
    queries: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    phrase_relevance: torch.Tensor | None = None
    phrase_cost: torch.Tensor | None = None
    mask_features: torch.Tensor | None = None
    intermediate_predictions: list[PhraseObjectPrediction] | None = None


@dataclass
class InstAlignOutput(ReferringSegmentationOutput):
    """Output of :class:`InstAlignForReferringSegmentation`: the shared fields of
    :class:`~refseg.modeling.outputs.ReferringSegmentationOutput`, then InstAlign's own.

    The shared fields: ``loss`` is eq. 13 (when ``mask_labels`` are given) and ``loss_dict`` its terms
    (``loss_merged``, ``loss_inst`` and parts, ``loss_nt``, ``loss_aux``); ``semantic_mask_logits``
    ``(B, H/4, W/4)`` the merged-mask logits of Adaptive Instance Aggregation (eq. 8 before the sigmoid);
    ``no_target_logits`` ``(B,)`` the no-target predictor (eq. 10-12); ``pred_masks`` ``(B, N, H/4, W/4)`` and
    ``pred_scores`` ``(B, N)`` the instance mask and relevance logits of the last block (eq. 4-5);
    ``pred_boxes`` is ``None`` (no box head).

    Args:
        text_features: ``(B, L, C)`` the phrase features ``T_K`` of the last block.
        phrase_relevance: ``(B, N, L)`` the phrase-object relevance ``R_K`` (eq. 1).
        aux_outputs: for each earlier prediction (learned queries, blocks 1..K-1) a dict with ``pred_masks``,
            ``pred_scores`` and ``semantic_mask_logits``; ``None`` unless ``output_aux_outputs``.
    """

    text_features: torch.Tensor | None = None
    phrase_relevance: torch.Tensor | None = None
    aux_outputs: list[dict[str, torch.Tensor]] | None = None


class InstAlignPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for InstAlign models.

    ``attn_implementation="sdpa"`` (the default) or ``"eager"`` (in ``from_pretrained`` or
    ``set_attn_implementation``) selects the attention kernel of the Swin backbone and the RoBERTa text
    encoder; it is recorded in ``config._attn_implementation`` and its sub-configs. It does not change the
    pixel decoder's deformable attention and the Phrase-Object Transformer's attention
    (``nn.MultiheadAttention``), which have one implementation. ``gradient_checkpointing_enable()`` recomputes
    the pixel decoder's encoder layers and the Phrase-Object Transformer blocks (and the Swin and RoBERTa
    layers) in the backward pass.
    """

    config: InstAlignConfig
    config_class = InstAlignConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = ["PhraseObjectTransformerBlock", "MSDeformAttnPixelDecoder"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) linears, N(0, 1) embeddings, Xavier attention projections (Mask2Former decoder),
        Deformable-DETR init of the pixel decoder's deformable attention, PReLU slope 0.25. The Swin and
        RoBERTa sub-models are initialised by their own ``_init_weights``."""
        std = self.config.init_std
        if isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, ObjectTextCrossAttention):
            for layer in (
                module.query_proj,
                module.text_key_proj,
                module.text_value_proj,
                module.query_value_proj,
                module.query_out_proj,
                module.text_out_proj,
            ):
                init.xavier_uniform_(layer.weight)
                init.zeros_(layer.bias)
        elif isinstance(module, MSDeformAttnPixelDecoder):
            module.reset_parameters()
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):  # query content / position and level embeddings (Mask2Former)
            init.normal_(module.weight, mean=0.0, std=1.0)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class InstAlignModel(InstAlignPreTrainedModel):
    """Backbone, text encoder, pixel decoder and Phrase-Object Transformer (Sec. 3.2-3.4)."""

    def __init__(self, config: InstAlignConfig) -> None:
        super().__init__(config)
        self.backbone = build_vision_backbone(config.backbone_config)
        self.text_encoder = build_text_encoder(config.text_config)
        self.text_projection = nn.Linear(self.text_encoder.hidden_size, config.hidden_dim)
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
        self.phrase_object_transformer = PhraseObjectTransformer(
            hidden_dim=config.hidden_dim,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            num_queries=config.num_queries,
            num_blocks=config.num_blocks,
            mask_dim=config.mask_dim,
            dropout=config.dropout,
            masked_attention=config.masked_attention,
            text_conditioned_score=config.text_conditioned_score,
            object_text_attention=config.transformer_decoder == "phrase_object",
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_intermediate_masks: bool = True,
        image_indices: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> InstAlignModelOutput | tuple:
        """Encode the image and the expression and refine the object queries.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32.
            input_ids: ``(B, L)`` token ids; attention_mask: ``(B, L)`` 1 for tokens, 0 for padding.
            image_indices: optional ``(B_text,)`` integer tensor pairing expression ``j`` with image
                ``image_indices[j]``; then ``input_ids`` is ``(B_text, L)`` and every image is encoded (backbone and
                pixel decoder) once however many expressions refer to it. ``None``: expression ``j`` goes with
                image ``j``.
            output_intermediate_masks: give every intermediate prediction full-resolution masks (deep
                supervision); ``False`` leaves them ``None``, which is faster and does not change the output.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        check_image_text_inputs(
            pixel_values,
            input_ids,
            attention_mask,
            text_position_limit(self.config.text_config),
            image_indices=image_indices,
            accepts_image_indices=True,
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        features = self.backbone(pixel_values)
        decoded = self.pixel_decoder(features)
        multi_scale_features, mask_features = decoded.multi_scale_features, decoded.mask_features
        if image_indices is not None:  # one encoded image for each of its expressions
            index = image_indices.to(mask_features.device)
            multi_scale_features = [f.index_select(0, index) for f in multi_scale_features]
            mask_features = mask_features.index_select(0, index)
        text_features = self.text_projection(self.text_encoder(input_ids, attention_mask))
        refined = self.phrase_object_transformer(
            multi_scale_features,
            mask_features,
            text_features,
            attention_mask,
            output_intermediate_masks=output_intermediate_masks,
        )
        last = refined.last
        output = InstAlignModelOutput(
            pred_masks=last.mask_logits,
            pred_scores=last.score_logits,
            queries=last.queries,
            text_features=last.text_features,
            phrase_relevance=last.relevance,
            phrase_cost=last.phrase_cost,
            mask_features=mask_features,
            intermediate_predictions=refined.predictions,
        )
        return output if return_dict else output.to_tuple()


class InstAlignForReferringSegmentation(InstAlignPreTrainedModel):
    """InstAlign with Adaptive Instance Aggregation, the no-target predictor and the training loss."""

    def __init__(self, config: InstAlignConfig) -> None:
        super().__init__(config)
        self.model = InstAlignModel(config)
        self.aggregation = AdaptiveInstanceAggregation(config.aggregation, config.aggregation_threshold)
        self.no_target_predictor = NoTargetPredictor(config.hidden_dim, config.no_target_input)
        self.criterion = InstAlignCriterion(
            instance_supervision=config.instance_supervision,
            lambda_score=config.lambda_score,
            lambda_mask=config.lambda_mask,
            lambda_phrase=config.lambda_phrase,
            lambda_merged=config.lambda_merged,
            lambda_inst=config.lambda_inst,
            lambda_nt=config.lambda_nt,
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        output_aux_outputs: bool | None = None,
        image_indices: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> InstAlignOutput | tuple:
        """Segment what the expression refers to.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32.
            input_ids: ``(B, L)``; attention_mask: ``(B, L)`` (1 = token, 0 = padding; default all ones).
            mask_labels: optional list of ``B`` float ``{0, 1}`` tensors ``(n_b, H, W)``, one mask per referred
                instance at the ``pixel_values`` resolution; ``n_b = 0`` marks a no-target expression. When
                given, ``loss`` and ``loss_dict`` are filled.
            image_indices: optional ``(B_text,)`` image index of every expression (see :class:`InstAlignModel`):
                several expressions share one encoded image; ``input_ids`` and ``mask_labels`` then have
                ``B_text`` entries.
            output_aux_outputs: return the predictions of the learned queries and of blocks 1..K-1 in
                ``aux_outputs``; defaults to ``True`` when the deep-supervision losses need them (``mask_labels``
                given and ``config.deep_supervision``), else ``False`` (inference skips their full-size masks).

        Raises:
            TypeError: for any other keyword argument (e.g. ``labels=`` instead of ``mask_labels=``).
            ValueError: for malformed inputs (checked once, by :class:`InstAlignModel`) or ``mask_labels``.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        deep = mask_labels is not None and self.config.deep_supervision
        output_aux_outputs = deep if output_aux_outputs is None else output_aux_outputs
        outputs = self.model(  # checks pixel_values, input_ids, attention_mask and image_indices
            pixel_values,
            input_ids,
            attention_mask,
            output_intermediate_masks=deep or output_aux_outputs,
            image_indices=image_indices,
            return_dict=True,
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        predictions = outputs.intermediate_predictions
        last = predictions[-1]
        semantic = [
            self.aggregation(p.mask_logits, p.score_logits) if p.mask_logits is not None else None
            for p in predictions
        ]  # eq. 8
        no_target_logits = self.no_target_predictor(
            last.queries, last.score_logits, last.text_features, attention_mask
        )  # eq. 10-12

        loss, loss_dict = None, None
        if mask_labels is not None:
            check_mask_labels(mask_labels, input_ids.shape[0], *pixel_values.shape[-2:])
            supervised = range(len(predictions)) if deep else [len(predictions) - 1]
            loss, loss_dict = self.criterion(
                [
                    {
                        "score_logits": predictions[i].score_logits,
                        "mask_logits": predictions[i].mask_logits,
                        "semantic_mask_logits": semantic[i],
                        "phrase_cost": predictions[i].phrase_cost,
                    }
                    for i in supervised
                ],
                no_target_logits,
                mask_labels,
            )

        output = InstAlignOutput(
            loss=loss,
            loss_dict=loss_dict,
            pred_masks=last.mask_logits,
            pred_scores=last.score_logits,
            semantic_mask_logits=semantic[-1],
            no_target_logits=no_target_logits,
            text_features=last.text_features,
            phrase_relevance=last.relevance,
            aux_outputs=[
                {"pred_masks": p.mask_logits, "pred_scores": p.score_logits, "semantic_mask_logits": s}
                for p, s in zip(predictions[:-1], semantic[:-1])
            ]
            if output_aux_outputs
            else None,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "InstAlignModel",
    "InstAlignPreTrainedModel",
    "InstAlignForReferringSegmentation",
    "InstAlignOutput",
    "InstAlignModelOutput",
    "PhraseObjectTransformerBlock",
]
