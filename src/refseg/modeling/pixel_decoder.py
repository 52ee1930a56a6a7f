"""Mask2Former pixel decoder (``MSDeformAttnPixelDecoder``; Mask2Former arXiv 2112.01527 Sec. 4.1 / App. A).

The coarsest ``transformer_in_features`` backbone maps (strides 8, 16, 32) are projected to ``hidden_dim``,
refined jointly by a stack of multi-scale deformable-attention encoder layers (Deformable DETR Sec. 4.1),
and an FPN adds the finer map(s) (stride 4). InstAlign (Sec. 3.2, supp. Sec. 8) uses it unchanged with 6
layers: ``multi_scale_features`` feed the Phrase-Object Transformer round robin and ``mask_features`` is
``V_4`` of eq. 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .deformable_attention import MultiScaleDeformableAttention
from .position_encoding import SinePositionEmbedding


@dataclass
class PixelDecoderOutput(ModelOutput):
    """Output of :class:`MSDeformAttnPixelDecoder`.

    Args:
        mask_features: ``(B, mask_dim, H/4, W/4)`` per-pixel embeddings (stride of the finest input map).
        multi_scale_features: 3 maps ``(B, hidden_dim, h, w)``, LOW resolution first (strides 32, 16, 8).
        hidden_states: with ``output_hidden_states=True``, the ``num_layers + 1`` flattened encoder states
            ``f_0 .. f_L`` ``(B, S, hidden_dim)`` (the input projections, then the output of each deformable
            layer), levels concatenated LOW resolution first; level ``k`` is the slice
            ``level_start_index[k] : level_start_index[k] + h_k * w_k``.
        position_embeddings: with ``output_hidden_states=True``, the sine + level embeddings ``(B, S, hidden_dim)``
            the encoder adds to its queries.
        padding_mask: with ``output_hidden_states=True`` and a ``pixel_mask``, ``(B, S)`` True at padded tokens.
        spatial_shapes: with ``output_hidden_states=True``, ``(h_k, w_k)`` of each level, low resolution first.
        level_start_index: with ``output_hidden_states=True``, the first token of each level in ``S``.
    """

    mask_features: torch.Tensor | None = None
    multi_scale_features: list[torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    position_embeddings: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None
    spatial_shapes: list[tuple[int, int]] | None = None
    level_start_index: list[int] | None = None


def _group_norm(num_channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, num_channels), num_channels)


class DeformableEncoderLayer(GradientCheckpointingLayer):
    """Post-norm encoder layer: deformable self-attention over all levels, then a ReLU FFN.

    A ``GradientCheckpointingLayer``: ``model.gradient_checkpointing_enable()`` on a ``PreTrainedModel``
    holding the pixel decoder checkpoints each layer.
    """

    def __init__(
        self, hidden_dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(
            embed_dim=hidden_dim, num_heads=num_heads, num_levels=num_levels, num_points=num_points
        )
        self.self_attn_layer_norm = nn.LayerNorm(hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, hidden_dim)
        self.final_layer_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None,
        spatial_shapes_list: list[tuple[int, int]],
    ) -> torch.Tensor:
        attended = self.self_attn(
            hidden_states + position_embeddings,
            reference_points,
            hidden_states,
            spatial_shapes,
            level_start_index,
            padding_mask,
            spatial_shapes_list=spatial_shapes_list,
        )
        hidden_states = self.self_attn_layer_norm(hidden_states + self.dropout(attended))
        ffn = self.fc2(self.dropout(F.relu(self.fc1(hidden_states))))
        return self.final_layer_norm(hidden_states + self.dropout(ffn))


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's multi-scale deformable-attention pixel decoder.

    Args:
        in_channels: channels of the backbone maps, finest first (strides 4, 8, 16, 32).
        hidden_dim: channels of the encoder and of ``multi_scale_features`` (Mask2Former: 256).
        mask_dim: channels of ``mask_features`` (Mask2Former: 256).
        num_layers: deformable encoder layers (6).
        num_heads: attention heads (8).
        num_points: sampling points per head and level (4).
        ffn_dim: hidden size of the encoder FFN (1024).
        dropout: dropout in the encoder layers (0.0).
        transformer_in_features: how many of the coarsest maps the encoder refines (3: strides 8, 16, 32);
            the remaining finer maps go through the FPN.
        norm_groups: GroupNorm groups (32 in Mask2Former); ``gcd(norm_groups, hidden_dim)`` is used so that
            small hidden sizes work.

    ``forward(features, pixel_mask=None)`` returns a :class:`PixelDecoderOutput`.
    """

    def __init__(
        self,
        in_channels: list[int],
        hidden_dim: int = 256,
        mask_dim: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        transformer_in_features: int = 3,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        # the model configs check that hidden_dim is even (sine embedding) and divisible by num_heads
        self.in_channels = in_channels
        self.hidden_dim = hidden_dim
        self.mask_dim = mask_dim
        self.num_levels = transformer_in_features
        self.num_fpn_levels = len(in_channels) - transformer_in_features
        self.num_outputs = min(3, len(in_channels))

        self.position_embedding = SinePositionEmbedding(hidden_dim // 2, normalize=True)
        # low resolution first, as Mask2Former: input_projections[0] is the coarsest map
        self.input_projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), _group_norm(hidden_dim, norm_groups))
            for c in in_channels[::-1][: self.num_levels]
        )
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, hidden_dim))
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(hidden_dim, num_heads, self.num_levels, num_points, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        # FPN, ordered from low to high resolution
        fpn_channels = in_channels[: self.num_fpn_levels][::-1]
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False), _group_norm(hidden_dim, norm_groups)
            )
            for c in fpn_channels
        )
        self.output_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=1, bias=False),
                _group_norm(hidden_dim, norm_groups),
                nn.ReLU(),
            )
            for _ in fpn_channels
        )
        self.mask_projection = nn.Conv2d(hidden_dim, mask_dim, kernel_size=1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mask2Former initialisation, with ``transformers.initialization`` (skips checkpoint-loaded tensors).

        Input projections: Xavier-uniform, zero bias. Encoder: Xavier-uniform on every matrix, then the
        Deformable-DETR init of each attention module; FFN biases keep PyTorch's default uniform init.
        Level embeddings: N(0, 1). FPN and mask projection convs: ``c2_xavier_fill`` (Kaiming-uniform with
        ``a=1``, zero bias). Norms: weight 1, bias 0.
        """
        for proj in self.input_projections:
            init.xavier_uniform_(proj[0].weight, gain=1.0)
            init.constant_(proj[0].bias, 0.0)
        for layer in self.layers:
            for fc in (layer.fc1, layer.fc2):
                init.xavier_uniform_(fc.weight)
                bound = 1.0 / math.sqrt(fc.in_features)
                init.uniform_(fc.bias, -bound, bound)
            layer.self_attn.reset_parameters()
        init.normal_(self.level_embed, mean=0.0, std=1.0)
        for conv in (
            [m[0] for m in self.lateral_convs] + [m[0] for m in self.output_convs] + [self.mask_projection]
        ):
            init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                init.constant_(conv.bias, 0.0)
        for module in self.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                init.ones_(module.weight)
                init.zeros_(module.bias)

    @staticmethod
    def get_reference_points(
        spatial_shapes_list: list[tuple[int, int]], valid_ratios: torch.Tensor
    ) -> torch.Tensor:
        """Pixel centres of every level, normalised by the valid size, as ``(B, S, L, 2)`` ``(x, y)``.

        ``valid_ratios`` ``(B, L, 2)`` holds ``(valid_w / W, valid_h / H)`` per level (Deformable DETR).
        """
        points = []
        for level, (height, width) in enumerate(spatial_shapes_list):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(
                    0.5, height - 0.5, height, dtype=valid_ratios.dtype, device=valid_ratios.device
                ),
                torch.linspace(0.5, width - 0.5, width, dtype=valid_ratios.dtype, device=valid_ratios.device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
            points.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(points, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(
        self,
        features: list[torch.Tensor],
        pixel_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> PixelDecoderOutput:
        """Decode the backbone maps.

        Args:
            features: the backbone maps, finest first, ``(B, in_channels[i], H_i, W_i)``.
            pixel_mask: optional ``(B, H, W)`` at any resolution, 1 for real pixels and 0 for padding; it is
                resized (nearest) to each level to mask padded values and compute valid ratios.
            output_hidden_states: also return the per-layer encoder states ``f_0 .. f_L`` and what is needed to
                attend to them (position embeddings, padding mask, level layout); the other outputs are the same.
        """
        coarse = features[::-1][: self.num_levels]  # low resolution first
        batch = coarse[0].shape[0]
        embeds, pos_embeds, masks = [], [], []
        for level, feature in enumerate(coarse):
            embed = self.input_projections[level](feature)
            if pixel_mask is None:
                mask = torch.zeros(
                    batch, embed.shape[2], embed.shape[3], dtype=torch.bool, device=embed.device
                )
            else:
                mask = (
                    F.interpolate(pixel_mask[:, None].float(), size=embed.shape[-2:], mode="nearest")[:, 0]
                    < 0.5
                )
            pos = self.position_embedding(embed, mask=mask if pixel_mask is not None else None)
            embeds.append(embed)
            pos_embeds.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
            masks.append(mask)

        spatial_shapes_list = [(int(e.shape[2]), int(e.shape[3])) for e in embeds]
        device = embeds[0].device
        spatial_shapes = torch.tensor(spatial_shapes_list, dtype=torch.long, device=device)
        sizes = [h * w for h, w in spatial_shapes_list]
        starts = [0]
        for size in sizes[:-1]:
            starts.append(starts[-1] + size)
        level_start_index = torch.tensor(starts, dtype=torch.long, device=device)

        hidden_states = torch.cat([e.flatten(2).transpose(1, 2) for e in embeds], 1)
        position_embeddings = torch.cat(pos_embeds, 1)
        padding_mask = torch.cat([m.flatten(1) for m in masks], 1) if pixel_mask is not None else None
        valid_ratios = torch.stack([self._valid_ratio(m, hidden_states.dtype) for m in masks], 1)
        reference_points = self.get_reference_points(spatial_shapes_list, valid_ratios)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                position_embeddings,
                reference_points,
                spatial_shapes,
                level_start_index,
                padding_mask,
                spatial_shapes_list,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)

        outputs = [
            x.transpose(1, 2).reshape(batch, self.hidden_dim, h, w)
            for x, (h, w) in zip(torch.split(hidden_states, sizes, dim=1), spatial_shapes_list)
        ]
        # FPN: bring in the finer maps, low to high resolution
        for idx, feature in enumerate(features[: self.num_fpn_levels][::-1]):
            lateral = self.lateral_convs[idx](feature)
            upsampled = F.interpolate(
                outputs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            outputs.append(self.output_convs[idx](lateral + upsampled))

        return PixelDecoderOutput(
            mask_features=self.mask_projection(outputs[-1]),
            multi_scale_features=outputs[: self.num_outputs],
            hidden_states=all_hidden_states,
            position_embeddings=position_embeddings if output_hidden_states else None,
            padding_mask=padding_mask if output_hidden_states else None,
            spatial_shapes=spatial_shapes_list if output_hidden_states else None,
            level_start_index=starts if output_hidden_states else None,
        )

    @staticmethod
    def _valid_ratio(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        _, height, width = mask.shape
        valid_height = (~mask[:, :, 0]).sum(1).to(dtype)
        valid_width = (~mask[:, 0, :]).sum(1).to(dtype)
        return torch.stack([valid_width / width, valid_height / height], -1)
