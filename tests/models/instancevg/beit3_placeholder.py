"""TEMPORARY stand-in for ``refseg.modeling.beit3`` (agreed interface) until the BEiT-3 branch is merged."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.utils import ModelOutput


class Beit3Config(PreTrainedConfig):
    model_type = "beit3"

    def __init__(
        self,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        vocab_size=64010,
        image_size=320,
        patch_size=16,
        max_text_positions=1024,
        layer_norm_eps=1e-5,
        drop_path_rate=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.vocab_size = vocab_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.max_text_positions = max_text_positions
        self.layer_norm_eps = layer_norm_eps
        self.drop_path_rate = drop_path_rate


@dataclass
class Beit3EncoderOutput(ModelOutput):
    cls_token: torch.Tensor | None = None
    image_tokens: torch.Tensor | None = None
    text_tokens: torch.Tensor | None = None


class Beit3Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = config.hidden_size
        self.patch = nn.Conv2d(3, d, config.patch_size, config.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.text = nn.Embedding(config.vocab_size, d)
        self.layer = nn.TransformerEncoderLayer(
            d, config.num_attention_heads, config.intermediate_size, 0.0, batch_first=True
        )

    def forward(self, pixel_values, input_ids, text_padding_mask):
        img = self.patch(pixel_values).flatten(2).transpose(1, 2)
        b = img.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1), img, self.text(input_ids)], 1)
        pad = torch.cat([torch.zeros(b, 1 + img.shape[1], dtype=torch.bool), text_padding_mask], 1)
        x = self.layer(x, src_key_padding_mask=pad)
        n = img.shape[1]
        return Beit3EncoderOutput(cls_token=x[:, 0], image_tokens=x[:, 1 : 1 + n], text_tokens=x[:, 1 + n :])
