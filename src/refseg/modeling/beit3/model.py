"""BEiT-3: the Multiway Transformer that encodes an image and a sentence jointly (Wang et al., "Image as a
Foreign Language", 2022, Sec. 2.1), used as InstanceVG's encoder (InstanceVG Sec. 3.1).

The image is cut into patches, a CLS token is prepended, and the text token embeddings are appended, giving one
sequence ``[CLS, patch_1 .. patch_hw ; text_1 .. text_L]``. Every layer is a pre-norm Transformer layer whose
self-attention runs over the whole sequence, but every linear layer and layer norm exists twice: the *vision
expert* processes the ``1 + h*w`` image tokens and the *language expert* the text tokens (the "multiway" split).
As in the released BEiT-3 code, the attention and feed-forward blocks carry an extra layer norm before their
output projection (sub-LN), the GELU is computed in float32 whatever the working precision (the attention
softmax runs inside ``scaled_dot_product_attention``, see below), padded text tokens are masked keys and their embeddings are zeroed before the first layer, and both position tables start at
row 2 (rows 0-1 are never read).

Computation layout (same results as the released code's, up to float rounding): the image and text tokens stay
separate tensors through every layer, so that each expert reads its own stream without a split and concatenation
per block; only the projected keys, values and queries of the two streams are joined for the shared attention,
which runs through ``torch.nn.functional.scaled_dot_product_attention``. Text columns after the longest sentence
of the batch are dropped before the first layer: they are masked keys, so the other outputs do not depend on
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ..input_checks import is_tracing
from .config import POSITION_OFFSET, Beit3Config


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


def sample_keep_scale(batch: int, drop_prob: float, like: torch.Tensor) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016) factors ``(B, 1, 1)``: 0 for the samples whose residual branch is
    dropped (probability ``drop_prob``), ``1 / (1 - drop_prob)`` for the others."""
    keep = like.new_empty((batch, 1, 1)).bernoulli_(1.0 - drop_prob)
    return keep / (1.0 - drop_prob)


class MultiwayExperts(nn.Module):
    """A vision and a language copy of one block (BEiT-3 Sec. 2.1): ``vision`` maps the image tokens (CLS and
    patches), ``text`` maps the text tokens."""

    def __init__(self, vision: nn.Module, text: nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.text = text

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vision(image), text(text))``."""
        return self.vision(image), self.text(text)


def _multiway_linear(in_features: int, out_features: int) -> MultiwayExperts:
    return MultiwayExperts(nn.Linear(in_features, out_features), nn.Linear(in_features, out_features))


def _multiway_layer_norm(width: int, eps: float) -> MultiwayExperts:
    return MultiwayExperts(nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps))


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_head)) v`` written out (the ``"eager"`` attention implementation).

    ``query``, ``key``, ``value`` ``(B, heads, N, d_head)``; ``attention_mask`` bool, broadcastable to
    ``(B, heads, N, N)``, True at the keys that may be attended to (None: all). The softmax runs in float32.
    """
    scores = torch.matmul(query, key.transpose(-2, -1)) * query.shape[-1] ** -0.5
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = scores.float().softmax(dim=-1).to(value.dtype)
    return torch.matmul(weights, value)


class Beit3SelfAttention(nn.Module):
    """Multi-head self-attention over the joint sequence ``[image ; text]`` with expert-specific projections
    and a sub-LN (``sub_layer_norm``) on the attention output before the output projection.

    ``q = W_q h``, ``k = W_k h``, ``v = W_v h`` (each with the vision or language expert),
    ``o = W_o LN(softmax(q k^T / sqrt(d_head)) v)``; padded keys get zero weight. The projections run on each
    stream; queries, keys and values are joined along the sequence (already split into heads) for
    ``scaled_dot_product_attention``, and its output is split back.

    ``config._attn_implementation`` picks the kernel (``from_pretrained(..., attn_implementation=...)`` sets it):
    ``"sdpa"`` (or unset) runs ``torch.nn.functional.scaled_dot_product_attention``, ``"eager"`` the explicit
    ``softmax(q k^T / sqrt(d_head)) v`` (softmax in float32); both give the same outputs up to float rounding.
    """

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.query = _multiway_linear(width, width)
        self.key = _multiway_linear(width, width)
        self.value = _multiway_linear(width, width)
        self.sub_layer_norm = _multiway_layer_norm(width, config.layer_norm_eps)
        self.output = _multiway_linear(width, width)

    def _joint_heads(
        self, projection: MultiwayExperts, image: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """Project both streams and join them: ``(B, N_i + N_t, D) -> (B, heads, N_i + N_t, d_head)``."""
        batch = image.shape[0]
        return torch.cat(
            [
                x.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
                for x in projection(image, text)
            ],
            dim=2,
        )

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` ``(B, N_i, D)``, ``text`` ``(B, N_t, D)`` -> the attention outputs of both streams.

        ``attention_mask`` ``(B, 1, 1, N_i + N_t)`` bool is True at the keys that may be attended to (None: all).
        """
        batch, num_image, width = image.shape
        query = self._joint_heads(self.query, image, text)
        key = self._joint_heads(self.key, image, text)
        value = self._joint_heads(self.value, image, text)
        if self.config._attn_implementation == "eager":
            attended = eager_attention(query, key, value, attention_mask)
        else:
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        attended = attended.transpose(1, 2).reshape(batch, -1, width)
        image_out, text_out = self.sub_layer_norm(attended[:, :num_image], attended[:, num_image:])
        return self.output(image_out, text_out)


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


class Beit3Layer(GradientCheckpointingLayer):
    """Pre-norm Multiway Transformer layer:
    ``x = x + DropPath(Attn(LN_attn(x)))``, ``x = x + DropPath(FFN(LN_ffn(x)))`` with expert-specific
    layer norms, projections and feed-forward networks. A ``GradientCheckpointingLayer``:
    ``gradient_checkpointing_enable()`` on the model recomputes it in the backward pass."""

    def __init__(self, config: Beit3Config, drop_path_prob: float) -> None:
        super().__init__()
        self.attention_layer_norm = _multiway_layer_norm(config.hidden_size, config.layer_norm_eps)
        self.attention = Beit3SelfAttention(config)
        self.feed_forward_layer_norm = _multiway_layer_norm(config.hidden_size, config.layer_norm_eps)
        self.feed_forward = MultiwayExperts(Beit3FeedForward(config), Beit3FeedForward(config))
        self.drop_path_prob = drop_path_prob

    def _add_residuals(
        self, streams: tuple[torch.Tensor, torch.Tensor], branches: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x + DropPath(branch)`` for both streams; a dropped sample loses the branch of both."""
        if self.training and self.drop_path_prob > 0.0:
            scale = sample_keep_scale(streams[0].shape[0], self.drop_path_prob, streams[0])
            branches = tuple(branch * scale for branch in branches)
        return streams[0] + branches[0], streams[1] + branches[1]

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` ``(B, N_i, D)`` (vision expert) and ``text`` ``(B, N_t, D)`` (language expert) -> the
        same shapes; ``attention_mask`` as in [`Beit3SelfAttention`]."""
        attended = self.attention(*self.attention_layer_norm(image, text), attention_mask)
        image, text = self._add_residuals((image, text), attended)
        transformed = self.feed_forward(*self.feed_forward_layer_norm(image, text))
        return self._add_residuals((image, text), transformed)

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

    def embed(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings plus positions: image ``[CLS, patches]`` ``(B, 1 + h*w, D)`` and text ``(B, L, D)``."""
        batch = pixel_values.shape[0]
        image = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        image = torch.cat([self.cls_token.expand(batch, -1, -1), image], dim=1)
        text = self.text_embedding(input_ids)
        image_positions = self.image_position_embedding.weight[
            POSITION_OFFSET : POSITION_OFFSET + image.shape[1]
        ]
        text_positions = self.text_position_embedding.weight[
            POSITION_OFFSET : POSITION_OFFSET + text.shape[1]
        ]
        return image + image_positions, text + text_positions

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
                zeroed); None means no padding. The valid outputs do not depend on the amount of padding: the
                columns after the last valid token of the batch are not encoded (their outputs are zeros), except
                while ``torch.export`` traces, where every column is encoded (no size may depend on values).
        """
        self._check_inputs(pixel_values, input_ids, text_padding_mask)
        length = input_ids.shape[1]
        attention_mask = None
        tracing = is_tracing()  # torch.export: no value-dependent sizes, encode every column
        if text_padding_mask is not None and not tracing:
            valid_columns = (~text_padding_mask).any(0).nonzero()
            kept = int(valid_columns[-1]) + 1 if len(valid_columns) else 0
            input_ids, text_padding_mask = input_ids[:, :kept], text_padding_mask[:, :kept]
        image, text = self.embed(pixel_values, input_ids)
        if text_padding_mask is not None and (tracing or bool(text_padding_mask.any())):
            text = text.masked_fill(text_padding_mask[..., None], 0.0)
            image_keys = text_padding_mask.new_ones(image.shape[0], image.shape[1])
            attention_mask = torch.cat([image_keys, ~text_padding_mask], dim=1)[:, None, None, :]
        for layer in self.layers:
            image, text = layer(image, text, attention_mask)
        image, text = self.output_layer_norm(image, text)
        if text.shape[1] < length:
            text = F.pad(text, (0, 0, 0, length - text.shape[1]))
        return Beit3EncoderOutput(cls_token=image[:, 0], image_tokens=image[:, 1:], text_tokens=text)
