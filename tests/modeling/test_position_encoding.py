import math

import pytest
import torch

from refseg.modeling.position_encoding import SinePositionEmbedding


def _expected(y: float, x: float) -> list[float]:
    # num_pos_feats=4, temperature=10000: dim_t = [1, 1, 100, 100]
    return [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100)] + [
        math.sin(x),
        math.cos(x),
        math.sin(x / 100),
        math.cos(x / 100),
    ]


def test_values_at_positions():
    emb = SinePositionEmbedding(num_pos_feats=4)
    pos = emb(torch.zeros(2, 7, 2, 3))
    assert pos.shape == (2, 8, 2, 3)
    two_pi = 2 * math.pi
    # pixel (row 0, col 0): y = 1/2 * 2 pi, x = 1/3 * 2 pi (Mask2Former normalisation, no 0.5 shift)
    assert pos[0, :, 0, 0].tolist() == pytest.approx(_expected(two_pi / 2, two_pi / 3), abs=1e-5)
    # pixel (row 1, col 2): y = x = 2 pi
    assert pos[1, :, 1, 2].tolist() == pytest.approx(_expected(two_pi, two_pi), abs=1e-5)
    assert torch.equal(pos[0], pos[1])


def test_shape_input_and_unnormalised():
    emb = SinePositionEmbedding(num_pos_feats=4, normalize=False)
    pos = emb((1, 5, 2, 3))
    assert pos.shape == (1, 8, 2, 3) and pos.dtype == torch.float32
    # raw 1-based indices: row 2, col 3
    assert pos[0, :, 1, 2].tolist() == pytest.approx(_expected(2.0, 3.0), abs=1e-5)


def test_mask_excludes_padding():
    emb = SinePositionEmbedding(num_pos_feats=4)
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[:, :, 2] = True  # last column is padding: x is normalised by 2 valid columns
    pos = emb(torch.zeros(1, 1, 2, 3), mask=mask)
    assert pos[0, :, 0, 1].tolist() == pytest.approx(_expected(math.pi, 2 * math.pi), abs=1e-5)
    assert torch.allclose(pos[..., :2], emb(torch.zeros(1, 1, 2, 2)))


def test_dtype_follows_input():
    emb = SinePositionEmbedding(num_pos_feats=8)
    assert emb(torch.zeros(1, 1, 3, 3, dtype=torch.float64)).dtype == torch.float64
