"""Text encoder: RoBERTa (InstAlign Sec. 3.2) or BERT built through ``transformers``, without pooler.

It embeds the expression into word features ``T_0`` of shape ``(B, L, C_text)``. Weights are random at
construction; see ``refseg.modeling.pretrained`` for loading a checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig


class TextEncoder(nn.Module):
    """Wraps a ``transformers`` encoder-only language model (``RobertaModel``, ``BertModel``).

    Attributes:
        model: the ``transformers`` model (no pooling layer); pretrained weights are loaded into it.
        hidden_size: ``C_text``, channels of the returned word features.
    """

    def __init__(self, text_config: PreTrainedConfig) -> None:
        super().__init__()
        try:
            self.model = AutoModel.from_config(text_config, add_pooling_layer=False)
        except TypeError:  # models without a pooler do not take the argument
            self.model = AutoModel.from_config(text_config)
        self.hidden_size: int = int(text_config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``last_hidden_state`` ``(B, L, C_text)``; ``attention_mask`` is 1 for tokens, 0 for padding."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def build_text_encoder(text_config: PreTrainedConfig) -> TextEncoder:
    """Build the text encoder from a ``RobertaConfig`` / ``BertConfig`` (random weights, no pooler)."""
    return TextEncoder(text_config)
