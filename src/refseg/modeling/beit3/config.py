"""Configuration of the BEiT-3 multiway encoder (Wang et al., "Image as a Foreign Language: BEiT Pretraining
for All Vision and Vision-Language Tasks", 2022), the joint image + text encoder of InstanceVG (Sec. 3.1).

BEiT-3 is one Transformer over the concatenation ``[CLS, image patches ; text tokens]`` whose layers hold two
"experts" (a vision and a language copy of every linear layer and layer norm, the Multiway Transformer of the
BEiT-3 paper, Sec. 2.1); attention is shared across the whole sequence. See ``refseg.modeling.beit3.model``.
"""

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils.type_validators import interval

from ..config_presets import ConfigPresets

# Rows before the first used position in both position tables (fairseq convention: positions start at 2).
POSITION_OFFSET = 2

# Presets (``Beit3Config.preset(name)``): the fields that differ from the defaults (BEiT-3 base).
BEIT3_PRESETS: dict[str, dict[str, Any]] = {
    # BEiT-3 base (768 wide, 12 layers, 12 heads, FFN 3072), drop path 0.1 as InstanceVG's base configurations
    "base": {},
    # BEiT-3 large (1024 wide, 24 layers, 16 heads, FFN 4096). Drop path 0: the official InstanceVG code passes
    # its drop-path rate to the large configuration under a misspelt keyword, so the released large models
    # were trained without stochastic depth.
    "large": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "drop_path_rate": 0.0,
    },
    # unit tests: 100-word vocabulary, 32x32 images with patch 8 (a 4x4 grid), text up to 14 tokens
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 100,
        "image_size": 32,
        "patch_size": 8,
        "max_text_positions": 16,
        "drop_path_rate": 0.0,
    },
}


@strict
class Beit3Config(ConfigPresets, PreTrainedConfig):
    r"""Configuration of [`Beit3Encoder`].

    The defaults are BEiT-3 base at InstanceVG's resolution (320x320, patch 16, so a 20x20 grid).

    Args:
        hidden_size (`int`, defaults to 768): width `D` of every token.
        intermediate_size (`int`, defaults to 3072): hidden width of the feed-forward experts.
        num_hidden_layers (`int`, defaults to 12): Multiway Transformer layers.
        num_attention_heads (`int`, defaults to 12): heads of the shared self-attention.
        vocab_size (`int`, defaults to 64010): rows of the text embedding (BEiT-3's XLM-R sentencepiece
            vocabulary).
        image_size (`int`, defaults to 320): side of the (square) input image; inputs must have exactly this size.
        patch_size (`int`, defaults to 16): side of a patch; `image_size` must be a multiple of it.
        num_channels (`int`, defaults to 3): channels of the input image.
        max_text_positions (`int`, defaults to 1024): rows of the text position table. Positions start at row 2
            (the fairseq convention BEiT-3 was trained with), so at most `max_text_positions - 2` text tokens.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of every layer norm.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth of the last layer; layer `i` of `N` drops its
            residual branches with probability `drop_path_rate * i / (N - 1)` during training.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init of the linear layers.
    """

    model_type = "beit3"
    presets: ClassVar[dict[str, dict[str, Any]]] = BEIT3_PRESETS

    hidden_size: int = interval(min=1)(default=768)
    intermediate_size: int = interval(min=1)(default=3072)
    num_hidden_layers: int = interval(min=1)(default=12)
    num_attention_heads: int = interval(min=1)(default=12)
    vocab_size: int = interval(min=1)(default=64010)
    image_size: int = interval(min=1)(default=320)
    patch_size: int = interval(min=1)(default=16)
    num_channels: int = interval(min=1)(default=3)
    max_text_positions: int = interval(min=POSITION_OFFSET, exclude_min=True)(default=1024)  # rows from 2 on
    layer_norm_eps: float | int = interval(min=0.0, exclude_min=True)(default=1e-5)
    drop_path_rate: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    initializer_range: float | int = 0.02

    def validate_architecture(self) -> None:
        """Cross-field rules (ranges are declared on the fields)."""
        super().validate_architecture()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )

    @property
    def image_grid_size(self) -> tuple[int, int]:
        """``(h, w)`` of the patch grid: ``image_size // patch_size`` on each side."""
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_image_positions(self) -> int:
        """Rows of the image position table: 2 offset rows, the CLS token and one row per patch."""
        h, w = self.image_grid_size
        return POSITION_OFFSET + 1 + h * w

    @property
    def max_text_length(self) -> int:
        """Longest text the text position table covers (``max_text_positions - 2``)."""
        return self.max_text_positions - POSITION_OFFSET
