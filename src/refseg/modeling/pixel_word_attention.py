"""Pixel-word attention and the language gate of LAVT (Yang et al., CVPR 2022, Sec. 3.2-3.3).

Both run inside a Swin stage of :class:`~refseg.modeling.language_aware_swin.LanguageAwareSwinBackbone`,
after the stage's blocks and before its patch merging:

* :class:`PixelWordAttention` (PWAM): every pixel attends over the words of the sentence; the attended
  language feature multiplies a projection of the pixel feature element-wise, giving the multimodal map
  ``F_m`` of the stage;
* :class:`LanguageGate`: a per-element gate ``tanh(MLP(F_m))`` that decides how much of ``F_m`` flows back
  into the visual stream (``V <- V + gate(F_m) * F_m``) and so reaches the next stage.

The 1x1 convolutions of the original are written as ``nn.Linear`` on token-last tensors ``(B, N, C)``; they
compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init


def _instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation over the tokens of each channel (``InstanceNorm1d`` without affine) of ``(B, N, C)``.

    Computed in the token-last layout (biased variance, as ``F.instance_norm``): transposing to ``(B, C, N)``
    for ``F.instance_norm`` and back would copy the map twice and leave the next ``nn.Linear`` a strided input.
    """
    centred = x - x.mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(dim=1, keepdim=True) + eps)


class PixelWordAttention(nn.Module):
    """PWAM: pixel-word attention then element-wise multimodal fusion (LAVT Sec. 3.2, eq. 1-3).

    For visual tokens ``V`` ``(B, N, C)`` and words ``L`` ``(B, T, C_t)`` with a padding mask:

    * ``V_i = GELU(W_i V)``;
    * ``Q = IN(W_q V)``, ``K = W_k L``, ``Vl = W_v L`` (padded words zeroed); ``A = softmax_words(Q K^T /
      sqrt(d))`` with padded words excluded (exactly zero weight); ``G = IN(W_w (A Vl))``;
    * ``F_m = GELU(W_m (V_i * G))``.

    ``IN`` is instance normalisation over the pixels, as in LAVT. One head (LAVT's and ReLA's setting) uses
    ``d = C``; with ``num_heads`` heads each head has ``C / num_heads`` channels and ``d`` is that.

    Args:
        visual_dim: channels ``C`` of the Swin stage.
        text_dim: channels ``C_t`` of the word features (768 for BERT-base).
        num_heads: attention heads (1).
        dropout: dropout after the two GELU projections (0.0).
    """

    def __init__(self, visual_dim: int, text_dim: int, num_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = visual_dim // num_heads
        self.visual_projection = nn.Linear(visual_dim, visual_dim)
        self.query_projection = nn.Linear(visual_dim, visual_dim)
        self.key_projection = nn.Linear(text_dim, visual_dim)
        self.value_projection = nn.Linear(text_dim, visual_dim)
        self.output_projection = nn.Linear(visual_dim, visual_dim)
        self.multimodal_projection = nn.Linear(visual_dim, visual_dim)
        self.dropout = nn.Dropout(dropout)

    def word_attention(
        self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The language feature of every pixel ``G`` ``(B, N, C)`` and the weights ``A`` ``(B, heads, N, T)``.

        ``text_mask`` ``(B, T)`` is 1 for words and 0 for padding; padded words get weight exactly 0. A
        sentence with no valid word yields ``G = IN(W_w 0)`` (zero up to rounding).
        """
        batch, num_pixels, channels = visual.shape
        num_words = text.shape[1]
        valid = text_mask.to(torch.bool)
        keep = valid[:, :, None].to(text.dtype)
        query = _instance_norm(self.query_projection(visual))
        key = self.key_projection(text) * (keep * self.head_dim**-0.5)
        value = self.value_projection(text) * keep
        query = query.view(batch, num_pixels, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch, num_words, self.num_heads, self.head_dim).transpose(1, 2)
        scores = query @ key.transpose(-1, -2)
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1) * valid[:, None, None, :].to(scores.dtype)
        # W_w [A_1 Vl_1 | ... | A_h Vl_h] = sum_h A_h (Vl_h W_w,h^T): by associativity the output projection is
        # applied to the T words of each head instead of the N pixels (the same function, N / T times cheaper),
        # and one product sums over heads and words.
        output_weight = self.output_projection.weight.view(channels, self.num_heads, self.head_dim)
        value = value.view(batch, num_words, self.num_heads, self.head_dim)
        projected = torch.einsum("bthd,chd->bhtc", value, output_weight)
        attended = weights.transpose(1, 2).reshape(batch, num_pixels, -1) @ projected.reshape(
            batch, -1, channels
        )
        return _instance_norm(attended + self.output_projection.bias), weights

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Multimodal map ``F_m`` ``(B, N, C)`` of visual tokens ``(B, N, C)`` and words ``(B, T, C_t)``."""
        visual_features = self.dropout(F.gelu(self.visual_projection(visual)))
        language_features, _ = self.word_attention(visual, text, text_mask)
        return self.dropout(F.gelu(self.multimodal_projection(visual_features * language_features)))


class LanguageGate(nn.Module):
    """Language pathway gate (LAVT Sec. 3.3): ``gate(F_m) = tanh(W_2 ReLU(W_1 F_m))``, per element.

    The stage's visual stream becomes ``V + gate(F_m) * F_m``. ``W_2`` starts at zero, so the gate is exactly
    zero at initialisation and a pretrained Swin runs unchanged until the gate learns to open. The original
    also zero-initialises ``W_1``; that would make every gradient of both matrices zero (each is multiplied
    by the other), so ``W_1`` starts from a normal distribution (std ``init_std``) instead.

    Args:
        dim: channels of the stage.
        init_std: standard deviation of ``W_1`` at initialisation (0.02).
    """

    def __init__(self, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.init_std = init_std
        self.fc1 = nn.Linear(dim, dim, bias=False)
        self.fc2 = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``W_1 ~ N(0, init_std)``, ``W_2 = 0`` (the gate is closed at initialisation).

        Uses ``transformers.initialization``, which leaves tensors loaded from a checkpoint untouched; a
        ``PreTrainedModel`` holding gates should call this from its ``_init_weights``.
        """
        init.normal_(self.fc1.weight, mean=0.0, std=self.init_std)
        init.zeros_(self.fc2.weight)

    def forward(self, multimodal: torch.Tensor) -> torch.Tensor:
        """The gate values ``(B, N, C)`` in ``(-1, 1)`` for the multimodal map ``(B, N, C)``."""
        return torch.tanh_(self.fc2(F.relu(self.fc1(multimodal), inplace=True)))


__all__ = ["LanguageGate", "PixelWordAttention"]
