"""BEiT-3: the Multiway Transformer that encodes an image and a sentence jointly (Wang et al., "Image as a
Foreign Language", 2022, Sec. 2.1), used as InstanceVG's encoder (InstanceVG Sec. 3.1).

The image is cut into patches, a CLS token is prepended, and the text token embeddings are appended, giving one
sequence ``[CLS, patch_1 .. patch_hw ; text_1 .. text_L]``. Every layer is a pre-norm Transformer layer whose
self-attention runs over the whole sequence, but every linear layer and layer norm exists twice: the *vision
expert* processes the ``1 + h*w`` image tokens and the *language expert* the text tokens (the "multiway" split).
As in the released BEiT-3 code, the attention and feed-forward blocks carry an extra layer norm before their
output projection (sub-LN), softmax and GELU are computed in float32 whatever the working precision, padded text
tokens are masked keys and their embeddings are zeroed before the first layer, and both position tables start at
row 2 (rows 0-1 are never read).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .beit3_config import POSITION_OFFSET, Beit3Config


@dataclass
class Beit3EncoderOutput(ModelOutput):
    """Output of [`Beit3Encoder`].

    Attributes:
        cls_token: ``(B, D)`` final state of the CLS token (first image-side token).
        image_tokens: ``(B, h*w, D)`` final states of the patches, row-major over the ``(h, w)`` patch grid
            (``Beit3Encoder.image_grid_size``); ``image_tokens.transpose(1, 2).reshape(B, D, h, w)`` is a map.
        text_tokens: ``(B, L, D)`` final states of the text tokens (padded positions hold values that must be
            ignored).
    """

    cls_token: torch.Tensor | None = None
    image_tokens: torch.Tensor | None = None
    text_tokens: torch.Tensor | None = None


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016): zero the residual branch of whole samples with probability
    ``drop_prob`` during training and rescale the kept ones by ``1 / (1 - drop_prob)``."""
    if drop_prob == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - drop_prob)
    return x * keep / (1.0 - drop_prob)


def masked_softmax_float32(scores: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention probabilities ``softmax(scores)`` over the last axis, computed in float32 and returned in the
    dtype of ``scores``, as BEiT-3 does under reduced precision.

    Args:
        scores: ``(B, heads, N_query, N_key)`` attention logits.
        key_padding_mask: ``(B, N_key)`` bool, True for keys that must receive zero probability, or None.
    """
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)


class MultiwayExperts(nn.Module):
    """A vision and a language copy of one block (BEiT-3 Sec. 2.1): ``vision`` maps the first
    ``split_position`` tokens of the sequence, ``text`` maps the others; the results are concatenated."""

    def __init__(self, vision: nn.Module, text: nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.text = text

    def forward(self, hidden_states: torch.Tensor, split_position: int) -> torch.Tensor:
        """Apply the experts to ``hidden_states[:, :split_position]`` and ``hidden_states[:, split_position:]``."""
        if split_position >= hidden_states.shape[1]:
            return self.vision(hidden_states)
        if split_position <= 0:
            return self.text(hidden_states)
        image_part, text_part = torch.split(
            hidden_states, [split_position, hidden_states.shape[1] - split_position], dim=1
        )
        return torch.cat([self.vision(image_part), self.text(text_part)], dim=1)


def _multiway_linear(in_features: int, out_features: int) -> MultiwayExperts:
    return MultiwayExperts(nn.Linear(in_features, out_features), nn.Linear(in_features, out_features))


def _multiway_layer_norm(width: int, eps: float) -> MultiwayExperts:
    return MultiwayExperts(nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps))


class Beit3SelfAttention(nn.Module):
    """Multi-head self-attention over the joint sequence with expert-specific projections and a sub-LN
    (``sub_layer_norm``) on the attention output before the output projection.

    ``q = W_q h / sqrt(d_head)``, ``k = W_k h``, ``v = W_v h`` (each with the vision or language expert),
    ``o = W_o LN(softmax(q k^T) v)``; padded keys get zero weight.
    """

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.query = _multiway_linear(width, width)
        self.key = _multiway_linear(width, width)
        self.value = _multiway_linear(width, width)
        self.sub_layer_norm = _multiway_layer_norm(width, config.layer_norm_eps)
        self.output = _multiway_linear(width, width)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D) -> (B * heads, N, d_head)``."""
        batch, length, _ = x.shape
        heads = x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        return heads.reshape(batch * self.num_heads, length, self.head_dim)

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, split_position: int
    ) -> torch.Tensor:
        """``(B, N, D) -> (B, N, D)``; ``padding_mask`` ``(B, N)`` is True at padded tokens."""
        batch, length, width = hidden_states.shape
        query = self.query(hidden_states, split_position) * self.scaling
        key = self.key(hidden_states, split_position)
        value = self.value(hidden_states, split_position)
        scores = torch.bmm(self._split_heads(query), self._split_heads(key).transpose(1, 2))
        scores = scores.view(batch, self.num_heads, length, length)
        probabilities = masked_softmax_float32(scores, padding_mask)
        attended = torch.bmm(
            probabilities.view(batch * self.num_heads, length, length), self._split_heads(value)
        )
        attended = attended.view(batch, self.num_heads, length, self.head_dim).transpose(1, 2)
        attended = self.sub_layer_norm(attended.reshape(batch, length, width), split_position)
        return self.output(attended, split_position)


class Beit3FeedForward(nn.Module):
    """One feed-forward expert: ``fc2(LN(GELU(fc1(x))))`` with the GELU evaluated in float32 and a sub-LN
    (``sub_layer_norm``) before the second projection."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.sub_layer_norm = nn.LayerNorm(config.intermediate_size, eps=config.layer_norm_eps)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(..., D) -> (..., D)``; computed on the tokens flattened to ``(tokens, D)``, as the original does
        (the same values in float32; bit-identical also in bfloat16, where the matrix kernels depend on the
        input layout)."""
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        hidden = self.fc1(tokens)
        hidden = F.gelu(hidden.float()).type_as(hidden)
        return self.fc2(self.sub_layer_norm(hidden)).view(hidden_states.shape)


class Beit3Layer(nn.Module):
    """Pre-norm Multiway Transformer layer:
    ``x = x + DropPath(Attn(LN_attn(x)))``, ``x = x + DropPath(FFN(LN_ffn(x)))`` with expert-specific
    layer norms, projections and feed-forward networks."""

    def __init__(self, config: Beit3Config, drop_path_prob: float) -> None:
        super().__init__()
        self.attention_layer_norm = _multiway_layer_norm(config.hidden_size, config.layer_norm_eps)
        self.attention = Beit3SelfAttention(config)
        self.feed_forward_layer_norm = _multiway_layer_norm(config.hidden_size, config.layer_norm_eps)
        self.feed_forward = MultiwayExperts(Beit3FeedForward(config), Beit3FeedForward(config))
        self.drop_path_prob = drop_path_prob

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, split_position: int
    ) -> torch.Tensor:
        """``(B, N, D) -> (B, N, D)``; tokens before ``split_position`` use the vision expert."""
        attended = self.attention(
            self.attention_layer_norm(hidden_states, split_position), padding_mask, split_position
        )
        hidden_states = hidden_states + drop_path(attended, self.drop_path_prob, self.training)
        transformed = self.feed_forward(
            self.feed_forward_layer_norm(hidden_states, split_position), split_position
        )
        return hidden_states + drop_path(transformed, self.drop_path_prob, self.training)

    def extra_repr(self) -> str:
        """Show the drop-path probability in ``print(model)``."""
        return f"drop_path_prob={self.drop_path_prob:g}"


def _drop_path_schedule(max_rate: float, num_layers: int) -> list[float]:
    """Drop-path probability per layer, linear from 0 (first layer) to ``max_rate`` (last layer)."""
    if num_layers == 1:
        return [0.0]
    step = max_rate / (num_layers - 1)
    return [i * step for i in range(num_layers - 1)] + [max_rate]


class Beit3Encoder(nn.Module):
    """BEiT-3 joint image + text encoder (InstanceVG Sec. 3.1, BEiT-3 Sec. 2.1).

    Attributes:
        config: the [`Beit3Config`].
        patch_embedding: ``Conv2d(C, D, patch, stride=patch)`` turning the image into ``h*w`` patch tokens.
        cls_token: ``(1, 1, D)`` token prepended to the patches.
        text_embedding: ``Embedding(vocab_size, D)`` of the text tokens (no padding row).
        image_position_embedding: ``(2 + 1 + h*w, D)`` table; CLS and the patches read rows ``2 ..``.
        text_position_embedding: ``(max_text_positions, D)`` table; text token ``j`` reads row ``2 + j``.
        layers: the Multiway Transformer layers.
        output_layer_norm: the final layer norm (one per expert).
    """

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.patch_embedding = nn.Conv2d(
            config.num_channels, width, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.text_embedding = nn.Embedding(config.vocab_size, width)
        self.image_position_embedding = nn.Embedding(config.num_image_positions, width)
        self.text_position_embedding = nn.Embedding(config.max_text_positions, width)
        num_layers = config.num_hidden_layers
        self.layers = nn.ModuleList(
            Beit3Layer(config, rate) for rate in _drop_path_schedule(float(config.drop_path_rate), num_layers)
        )
        self.output_layer_norm = _multiway_layer_norm(width, config.layer_norm_eps)
        self.reset_parameters()

    @property
    def image_grid_size(self) -> tuple[int, int]:
        """``(h, w)`` of the patch grid, to reshape ``image_tokens`` into ``(B, D, h, w)``."""
        return self.config.image_grid_size

    def reset_parameters(self) -> None:
        """BEiT-3's initialisation: linear weights truncated normal (std ``initializer_range``, cut at one std),
        biases 0, layer norms 1/0, text embedding ``N(0, D^-1/2)``, position tables ``N(0, 1)``, CLS token 0."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std, a=-std, b=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.text_embedding.weight, std=self.config.hidden_size**-0.5)
        nn.init.normal_(self.image_position_embedding.weight)
        nn.init.normal_(self.text_position_embedding.weight)
        nn.init.zeros_(self.cls_token)
        self.patch_embedding.reset_parameters()

    def _check_inputs(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, text_padding_mask: torch.Tensor | None
    ) -> None:
        config = self.config
        expected = (config.num_channels, config.image_size, config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must be (B, {expected[0]}, {expected[1]}, {expected[2]}) (BEiT-3 has a fixed "
                f"image size), got {tuple(pixel_values.shape)}"
            )
        if input_ids.dim() != 2 or input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"input_ids must be (B, L) with B = {pixel_values.shape[0]} as pixel_values, "
                f"got {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > config.max_text_length:
            raise ValueError(
                f"text of {input_ids.shape[1]} tokens is longer than the text position table allows "
                f"({config.max_text_length} = max_text_positions - {POSITION_OFFSET})"
            )
        if text_padding_mask is not None and (
            text_padding_mask.shape != input_ids.shape or text_padding_mask.dtype != torch.bool
        ):
            raise ValueError(
                f"text_padding_mask must be a bool tensor shaped like input_ids {tuple(input_ids.shape)} "
                f"(True = padding), got {text_padding_mask.dtype} {tuple(text_padding_mask.shape)}"
            )

    def embed(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Token embeddings plus positions of ``[CLS, patches ; text]`` ``(B, 1 + h*w + L, D)`` and the
        multiway split position ``1 + h*w``."""
        batch = pixel_values.shape[0]
        image = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        image = torch.cat([self.cls_token.expand(batch, -1, -1), image], dim=1)
        split_position = image.shape[1]
        text = self.text_embedding(input_ids)
        image_positions = self.image_position_embedding.weight[
            POSITION_OFFSET : POSITION_OFFSET + split_position
        ]
        text_positions = self.text_position_embedding.weight[
            POSITION_OFFSET : POSITION_OFFSET + text.shape[1]
        ]
        embeddings = torch.cat([image + image_positions, text + text_positions], dim=1)
        return embeddings, split_position

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        text_padding_mask: torch.Tensor | None = None,
    ) -> Beit3EncoderOutput:
        """Encode an image and its sentence jointly.

        Args:
            pixel_values: ``(B, C, H, W)`` normalised images of exactly ``config.image_size``.
            input_ids: ``(B, L)`` token ids, ``L <= max_text_positions - 2``.
            text_padding_mask: ``(B, L)`` bool, True at padding tokens (they are masked keys, their embeddings are
                zeroed); None means no padding. With right padding the valid outputs do not depend on ``L``.
        """
        self._check_inputs(pixel_values, input_ids, text_padding_mask)
        hidden_states, split_position = self.embed(pixel_values, input_ids)
        padding_mask = None
        if text_padding_mask is not None:
            image_mask = text_padding_mask.new_zeros(text_padding_mask.shape[0], split_position)
            padding_mask = torch.cat([image_mask, text_padding_mask], dim=1)
            hidden_states = hidden_states.masked_fill(padding_mask[..., None], 0.0)
        for layer in self.layers:
            hidden_states = layer(hidden_states, padding_mask, split_position)
        hidden_states = self.output_layer_norm(hidden_states, split_position)
        return Beit3EncoderOutput(
            cls_token=hidden_states[:, 0],
            image_tokens=hidden_states[:, 1:split_position],
            text_tokens=hidden_states[:, split_position:],
        )


def build_beit3_encoder(config: Beit3Config) -> Beit3Encoder:
    """Build a randomly initialised [`Beit3Encoder`] (see ``refseg.modeling.beit3_pretrained`` for weights)."""
    if not isinstance(config, Beit3Config):
        raise ValueError(f"config must be a Beit3Config, got {type(config).__name__}")
    return Beit3Encoder(config)
