"""TemplateModel (TODO(paper): authors, "title", venue year, Sec. N).

``TemplateModelModel``: the text encoder and the visual encoder, both projected to ``hidden_dim``.
``TemplateModelForReferringSegmentation`` adds the heads and the loss. The skeleton is deliberately plain: a
convolutional encoder, the sentence as the masked mean of its word features, a dot-product mask head and a
no-target MLP. TODO(paper): replace each part with the paper's, one concept per file; blocks another model
could use belong in ``refseg.modeling``, and the model files keep only what is unique to the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...modeling.input_checks import check_image_text_inputs, check_mask_labels, reject_unknown_kwargs
from ...modeling.loading_checks import CheckedFromPretrainedMixin
from ...modeling.mlp import MLP
from ...modeling.outputs import ReferringSegmentationOutput
from ...modeling.text_encoder import build_text_encoder
from ...validation import text_position_limit
from .configuration_template_model import TemplateModelConfig
from .criterion import TemplateModelCriterion


@dataclass
class TemplateModelModelOutput(ModelOutput):
    """Output of :class:`TemplateModelModel`.

    Args:
        visual_features: ``(B, C, H / s, W / s)`` the image features, ``s = 2 ** len(encoder_channels)``.
        word_features: ``(B, L, C)`` the projected word features, padding positions included.
        sentence_features: ``(B, C)`` the masked mean of the word features.
    """

    visual_features: torch.Tensor | None = None
    word_features: torch.Tensor | None = None
    sentence_features: torch.Tensor | None = None


@dataclass
class TemplateModelOutput(ReferringSegmentationOutput):
    """Output of :class:`TemplateModelForReferringSegmentation`: the shared fields, then the model's own.

    The skeleton predicts no instances (``pred_masks``, ``pred_scores`` and ``pred_boxes`` stay ``None``; the
    image processor returns the mask's connected components). TODO(paper): fill the shared fields the paper
    predicts and add the paper's own outputs below, each with its shape.

    Args:
        semantic_mask_logits: ``(B, H / s, W / s)`` foreground logits of the referred objects.
        no_target_logits: ``(B,)``; ``sigmoid`` is the probability that nothing is referred to.
        sentence_features: ``(B, C)`` the sentence embedding the mask head compares every pixel with.
    """

    sentence_features: torch.Tensor | None = None


class TemplateModelPreTrainedModel(CheckedFromPretrainedMixin, PreTrainedModel):
    """Weight initialisation and loading for the TemplateModel models."""

    config: TemplateModelConfig
    config_class = TemplateModelConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) linears and convolutions, unit norms; the text encoder initialises itself.
        TODO(paper): the paper's (or its code's) initialisation."""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class ConvolutionalEncoder(nn.Module):
    """The skeleton's visual encoder: per stage a stride-2 3x3 convolution, GroupNorm and ReLU.

    TODO(paper): the paper's visual encoder (e.g. ``refseg.modeling.backbone.build_vision_backbone``).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip([3, *channels[:-1]], channels):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(1, out_channels),
                nn.ReLU(),
            ]
        self.layers = nn.Sequential(*layers)
        self.channels = int(channels[-1])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, channels[-1], H / s, W / s)``."""
        return self.layers(pixel_values)


class TemplateModelModel(TemplateModelPreTrainedModel):
    """The text encoder and the visual encoder, projected to ``hidden_dim``. TODO(paper): section."""

    def __init__(self, config: TemplateModelConfig) -> None:
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        self.visual_encoder = ConvolutionalEncoder(config.encoder_channels)
        self.visual_projection = nn.Conv2d(self.visual_encoder.channels, config.hidden_dim, kernel_size=1)
        self.text_projection = nn.Linear(self.text_encoder.hidden_size, config.hidden_dim)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TemplateModelModelOutput | tuple:
        """Encode the image and the sentence.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32.
            input_ids, attention_mask: ``(B, L)``, one sentence per image (1 = token, 0 = padding).

        Raises:
            TypeError: for any other keyword argument.
            ValueError: for malformed inputs (the one check of the inputs, at this public boundary).
        """
        reject_unknown_kwargs(kwargs, self.forward)
        check_image_text_inputs(
            pixel_values, input_ids, attention_mask, text_position_limit(self.config.text_config)
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        words = self.text_projection(self.text_encoder(input_ids, attention_mask))  # (B, L, C)
        valid = attention_mask[..., None].to(words.dtype)  # (B, L, 1)
        sentence = (words * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # (B, C)
        visual = self.visual_projection(self.visual_encoder(pixel_values))  # (B, C, h, w)
        output = TemplateModelModelOutput(
            visual_features=visual, word_features=words, sentence_features=sentence
        )
        return output if return_dict else output.to_tuple()


class TemplateModelForReferringSegmentation(TemplateModelPreTrainedModel):
    """The mask and no-target heads on :class:`TemplateModelModel`, and the loss. TODO(paper): section."""

    def __init__(self, config: TemplateModelConfig) -> None:
        super().__init__(config)
        self.model = TemplateModelModel(config)
        # TODO(paper): the paper's heads
        self.no_target_head = MLP(2 * config.hidden_dim, config.hidden_dim, 1, num_layers=2)
        self.criterion = TemplateModelCriterion(config.lambda_mask, config.lambda_no_target)
        self.post_init()

    @staticmethod
    def mask_logits(visual_features: torch.Tensor, sentence_features: torch.Tensor) -> torch.Tensor:
        """The dot-product mask head: ``<v_ij, s> / sqrt(C)`` for every pixel feature ``v_ij`` ``(B, C, h, w)``
        and the sentence ``s`` ``(B, C)`` -> ``(B, h, w)`` foreground logits."""
        scale = visual_features.shape[1] ** -0.5
        return torch.einsum("bchw,bc->bhw", visual_features, sentence_features) * scale

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TemplateModelOutput | tuple:
        """Segment what the expression refers to and say whether it refers to anything.

        Args:
            pixel_values: ``(B, 3, H, W)``, H and W multiples of 32 (the processor resizes to ``image_size``).
            input_ids, attention_mask: ``(B, L)``, one sentence per image (1 = token, 0 = padding).
            mask_labels: optional list of ``B`` float ``{0, 1}`` tensors ``(n_b, H, W)``, one mask per referred
                instance at the ``pixel_values`` resolution (``n_b = 0``: no target). When given, ``loss`` and
                ``loss_dict`` are filled.

        Raises:
            TypeError: for any other keyword argument (e.g. ``labels=`` instead of ``mask_labels=``).
            ValueError: for malformed inputs (checked once, by :class:`TemplateModelModel`) or ``mask_labels``.
        """
        reject_unknown_kwargs(kwargs, self.forward)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # TemplateModelModel checks pixel_values, input_ids and attention_mask
        encoded = self.model(pixel_values, input_ids, attention_mask, return_dict=True)
        visual, sentence = encoded.visual_features, encoded.sentence_features
        semantic = self.mask_logits(visual, sentence)  # (B, h, w)
        pooled = visual.mean(dim=(2, 3))  # (B, C)
        no_target = self.no_target_head(torch.cat([sentence, pooled], dim=-1))[:, 0]  # (B,)

        loss, loss_dict = None, None
        if mask_labels is not None:
            check_mask_labels(mask_labels, len(pixel_values), *pixel_values.shape[-2:])
            loss, loss_dict = self.criterion(semantic, no_target, list(mask_labels))
        output = TemplateModelOutput(
            loss=loss,
            loss_dict=loss_dict,
            semantic_mask_logits=semantic,
            no_target_logits=no_target,
            sentence_features=sentence,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "ConvolutionalEncoder",
    "TemplateModelForReferringSegmentation",
    "TemplateModelModel",
    "TemplateModelModelOutput",
    "TemplateModelOutput",
    "TemplateModelPreTrainedModel",
]
