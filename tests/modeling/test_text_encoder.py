import pytest
import torch
from transformers import BertConfig, RobertaConfig

from refseg.modeling.text_encoder import TextEncoder, build_text_encoder

SMALL = dict(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.mark.parametrize("config", [RobertaConfig(max_position_embeddings=40, **SMALL), BertConfig(**SMALL)])
def test_last_hidden_state_without_pooler(config):
    encoder = build_text_encoder(config)
    assert isinstance(encoder, TextEncoder) and encoder.hidden_size == 32
    assert encoder.model.pooler is None
    assert not any("pooler" in k for k in encoder.state_dict())
    ids = torch.randint(4, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    out = encoder(ids, mask)
    assert out.shape == (2, 7, 32)


def test_padding_does_not_change_real_tokens():
    encoder = build_text_encoder(RobertaConfig(max_position_embeddings=40, **SMALL)).eval()
    ids = torch.tensor([[0, 5, 6, 2]])
    padded = torch.tensor([[0, 5, 6, 2, 1, 1]])
    with torch.no_grad():
        a = encoder(ids, torch.ones_like(ids))
        b = encoder(padded, torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert torch.allclose(a, b[:, :4], atol=1e-5)
