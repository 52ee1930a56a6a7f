"""Language-aware Swin: pixel-word attention and language gates inside the Swin stages (LAVT, ReLA).

LAVT (Yang et al., CVPR 2022, Sec. 3) fuses the sentence into the visual encoder: after the blocks of each
Swin stage, and before its patch merging, a pixel-word attention module (PWAM) computes a multimodal map
``F_m`` that is (a) the stage's output feature map, so every map the decoder sees is conditioned on the
sentence, and (b) gated back into the visual stream (``V <- V + gate(F_m) * F_m``) that continues to the next
stage. ReLA (Liu et al., CVPR 2023) and the presence & plurality model (Kim et al., AAAI 2026, Sec. 3.1, eq. 1)
use the same encoder; ReLA gates stages 1-3 only, LAVT all four.

The Swin itself is transformers' ``SwinBackbone`` (held in ``.model``, exactly as in
:class:`~refseg.modeling.backbone.VisionBackbone`), so its parameter names are unchanged and pretrained Swin
checkpoints load into it with :func:`~refseg.modeling.pretrained.load_pretrained_encoders`. The stages are run
one by one (``embeddings``, each stage's ``blocks``, fusion, ``downsample``) and each stage output goes
through the backbone's own ``hidden_states_norms`` LayerNorm.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedConfig

from .backbone import VisionBackbone
from .pixel_word_attention import LanguageGate, PixelWordAttention

FUSIONS = ("none", "pwam")


class LanguageAwareSwinBackbone(VisionBackbone):
    """Swin with PWAM + language gates between each stage's blocks and its downsampling.

    Args:
        swin_config: a ``SwinConfig`` (4 stages); ``out_features`` is set to the 4 stages on a copy.
        text_hidden_size: channels of the word features (768 for BERT-base).
        fusion: ``"pwam"`` (LAVT/ReLA) or ``"none"``: a plain Swin that ignores the text (same maps as
            :class:`~refseg.modeling.backbone.VisionBackbone`).
        gate_stages: 0-based stages whose multimodal map is gated back into the visual stream; ReLA's
            ``(0, 1, 2)`` by default (the last stage has no downsampling after it, so its gate only changes the
            ``"gated"`` output); LAVT uses ``(0, 1, 2, 3)``.
        stage_output: ``"fused"`` (LAVT, ReLA): each stage returns its multimodal map ``F_m``; ``"gated"``:
            each stage returns the gated visual stream ``V + gate(F_m) * F_m`` (equal to plain Swin while the
            gates are closed).
        fusion_heads: attention heads of each PWAM (1, as LAVT and ReLA).
        fusion_dropout: dropout inside PWAM (0.0).
        final_layernorm: keep the LayerNorm that transformers' ``SwinModel`` applies after its last stage. No
            output of this backbone passes through it (each stage has its own ``hidden_states_norms``);
            ``False`` replaces it by an identity, so that the parameters are exactly those of an encoder
            without it (ReLA's released Swin has none).

    ``forward(pixel_values, text_features, text_mask)`` returns the 4 maps ``(B, C_i, H / 2^(i+2), W / 2^(i+2))``
    (Swin pads inputs that are not multiples of the strides and the maps round up).
    """

    def __init__(
        self,
        swin_config: PreTrainedConfig,
        text_hidden_size: int,
        fusion: str = "pwam",
        gate_stages: Sequence[int] = (0, 1, 2),
        stage_output: str = "fused",
        fusion_heads: int = 1,
        fusion_dropout: float = 0.0,
        final_layernorm: bool = True,
    ) -> None:
        if getattr(swin_config, "model_type", None) != "swin":
            raise ValueError(
                f"swin_config must be a SwinConfig, got {type(swin_config).__name__} "
                f"(model_type {getattr(swin_config, 'model_type', None)!r})"
            )
        if len(swin_config.depths) != 4:
            raise ValueError(f"swin_config must have 4 stages, got depths={list(swin_config.depths)}")
        gate_stages = tuple(sorted({int(i) for i in gate_stages}))  # stage indices in 0..3
        wanted = list(swin_config.stage_names[-4:])
        if list(getattr(swin_config, "out_features", None) or []) != wanted:
            swin_config = copy.deepcopy(swin_config)
            swin_config.out_features = wanted
        super().__init__(swin_config)
        if not final_layernorm:
            self.model.swin.layernorm = nn.Identity()
        self.fusion = fusion
        self.gate_stages = gate_stages
        self.stage_output = stage_output
        self.text_hidden_size = int(text_hidden_size)
        self.stage_names: list[str] = wanted
        if fusion == "pwam":
            self.pixel_word_attention = nn.ModuleList(
                PixelWordAttention(c, self.text_hidden_size, fusion_heads, fusion_dropout)
                for c in self.channels
            )
            self.language_gates = nn.ModuleDict({str(i): LanguageGate(self.channels[i]) for i in gate_stages})

    def forward(
        self,
        pixel_values: torch.Tensor,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Return the 4 stage maps, finest first.

        Args:
            pixel_values: ``(B, 3, H, W)``.
            text_features: ``(B, L, text_hidden_size)`` word features (required unless ``fusion="none"``).
            text_mask: ``(B, L)``, 1 for words and 0 for padding (default: all words valid).
        """
        if self.fusion == "none":
            return tuple(self.model(pixel_values).feature_maps)
        if text_mask is None:  # text_features (B, L, text_hidden_size)
            text_mask = torch.ones(text_features.shape[:2], dtype=torch.bool, device=text_features.device)

        swin = self.model.swin
        hidden_states, (height, width) = swin.embeddings(pixel_values)
        maps = []
        for index, stage in enumerate(swin.encoder.layers):
            for block in stage.blocks:
                hidden_states = block(hidden_states, (height, width), always_partition=True)[0]
            fused = self.pixel_word_attention[index](hidden_states, text_features, text_mask)
            gate = self.language_gates[str(index)] if str(index) in self.language_gates else None
            if gate is not None:
                hidden_states = hidden_states + gate(fused) * fused
            output = fused if self.stage_output == "fused" else hidden_states
            output = self.model.hidden_states_norms[self.stage_names[index]](output)
            batch, _, channels = output.shape
            maps.append(output.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                hidden_states = stage.downsample(hidden_states, (height, width))
                height, width = (height + 1) // 2, (width + 1) // 2
        return tuple(maps)


__all__ = ["FUSIONS", "LanguageAwareSwinBackbone"]
