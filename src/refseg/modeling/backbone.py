"""Vision backbone: a hierarchical Swin Transformer built through ``transformers`` (InstAlign Sec. 3.2).

The backbone produces the four multi-scale maps ``V_1..V_4`` (strides 4, 8, 16, 32) that the Mask2Former
pixel decoder consumes. Weights are random at construction; see ``refseg.modeling.pretrained`` for loading
ImageNet checkpoints.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoBackbone, PreTrainedConfig


class VisionBackbone(nn.Module):
    """Wraps a ``transformers`` backbone (``SwinBackbone``) so that ``forward`` returns plain feature maps.

    Attributes:
        model: the ``transformers`` backbone (e.g. ``SwinBackbone``); pretrained weights are loaded into it.
        channels: channels of the four returned maps (``[C, 2C, 4C, 8C]`` for Swin).
        strides: their strides with respect to the input (``[4, 8, 16, 32]`` for Swin with 4x4 patches).
    """

    def __init__(self, backbone_config: PreTrainedConfig) -> None:
        super().__init__()
        self.model = AutoBackbone.from_config(backbone_config)
        self.channels: list[int] = list(self.model.channels)
        patch = getattr(backbone_config, "patch_size", 4)
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        self.strides: list[int] = [int(patch) * 2**i for i in range(4)]

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Return the 4 feature maps ``(B, channels[i], ceil(H / s_i), ceil(W / s_i))``, strides 4 to 32."""
        return list(self.model(pixel_values).feature_maps)


def build_vision_backbone(backbone_config: PreTrainedConfig) -> VisionBackbone:
    """Build the vision backbone from a backbone config (e.g. ``SwinConfig``); weights are random.

    The last four stages are always returned: a config whose ``out_features`` differ (``SwinConfig()``
    defaults to ``["stage4"]``) is copied with ``out_features = stage_names[-4:]``; the given config is not
    modified.
    """
    if not isinstance(backbone_config, PreTrainedConfig):
        raise ValueError(
            f"backbone_config must be a PreTrainedConfig (e.g. SwinConfig), got {type(backbone_config).__name__}"
        )
    stage_names = list(getattr(backbone_config, "stage_names", []) or [])
    if len(stage_names) < 4:
        raise ValueError(
            f"backbone_config ({type(backbone_config).__name__}) must describe a backbone with at least 4 stages, "
            f"got stage_names={stage_names}"
        )
    wanted = stage_names[-4:]
    if list(getattr(backbone_config, "out_features", None) or []) != wanted:
        backbone_config = copy.deepcopy(backbone_config)
        backbone_config.out_features = wanted
    return VisionBackbone(backbone_config)
