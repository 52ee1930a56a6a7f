"""BEiT-3, the multiway image + text encoder of InstanceVG (Wang et al., "Image as a Foreign Language", 2022):
its configuration (:mod:`~refseg.modeling.beit3.config`), the encoder (:mod:`~refseg.modeling.beit3.model`)
and the reader of the original BEiT-3 weights (:mod:`~refseg.modeling.beit3.pretrained`: the key map to and
from the released code's names, and the loader of pretraining checkpoints)."""

from __future__ import annotations

from .config import BEIT3_PRESETS, POSITION_OFFSET, Beit3Config
from .model import Beit3Encoder, Beit3EncoderOutput, Beit3Layer
from .pretrained import (
    UNUSED_ORIGINAL_BEIT3_KEYS,
    Beit3LoadingReport,
    beit3_state_dict_from_original,
    beit3_state_dict_to_original,
    init_beit3_encoder,
    interpolate_image_positions,
    load_beit3_pretrained,
)

__all__ = [
    "BEIT3_PRESETS",
    "POSITION_OFFSET",
    "UNUSED_ORIGINAL_BEIT3_KEYS",
    "Beit3Config",
    "Beit3Encoder",
    "Beit3EncoderOutput",
    "Beit3Layer",
    "Beit3LoadingReport",
    "beit3_state_dict_from_original",
    "beit3_state_dict_to_original",
    "init_beit3_encoder",
    "interpolate_image_positions",
    "load_beit3_pretrained",
]
