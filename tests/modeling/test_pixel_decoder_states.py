"""The pixel decoder's per-layer states ``f_0 .. f_L`` (presence & plurality eq. 2 and 4): additive output."""

import torch

from refseg.modeling.pixel_decoder import MSDeformAttnPixelDecoder

CHANNELS = [16, 32, 64, 128]


def _decoder(num_layers=3):
    return MSDeformAttnPixelDecoder(
        CHANNELS, hidden_dim=32, mask_dim=24, num_layers=num_layers, num_heads=4, num_points=2, ffn_dim=64
    ).eval()


def _features(height=64, width=96):
    gen = torch.Generator().manual_seed(0)
    return [
        torch.randn(2, c, -(-height // s), -(-width // s), generator=gen)
        for c, s in zip(CHANNELS, [4, 8, 16, 32])
    ]


def test_states_are_off_by_default_and_do_not_change_the_other_outputs():
    decoder, feats = _decoder(), _features()
    with torch.no_grad():
        plain = decoder(feats)
        with_states = decoder(feats, output_hidden_states=True)
    assert set(plain.keys()) == {"mask_features", "multi_scale_features"}
    assert plain.hidden_states is None and plain.position_embeddings is None
    assert torch.equal(plain.mask_features, with_states.mask_features)
    for a, b in zip(plain.multi_scale_features, with_states.multi_scale_features):
        assert torch.equal(a, b)


def test_one_state_per_layer_plus_the_input_low_resolution_first():
    decoder, feats = _decoder(num_layers=3), _features()
    with torch.no_grad():
        out = decoder(feats, output_hidden_states=True)
    assert out.spatial_shapes == [(2, 3), (4, 6), (8, 12)]
    assert out.level_start_index == [0, 6, 30]
    assert len(out.hidden_states) == 4
    assert all(s.shape == (2, 6 + 24 + 96, 32) for s in out.hidden_states)
    assert out.position_embeddings.shape == (2, 126, 32)
    assert out.padding_mask is None
    # f_0 is the input projection of the stride-32 map; f_L is what multi_scale_features reshapes
    f0 = decoder.input_projections[0](feats[3]).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.hidden_states[0][:, :6], f0)
    last = out.multi_scale_features[0].flatten(2).transpose(1, 2)
    assert torch.equal(out.hidden_states[-1][:, :6], last)
    # each state is its layer applied to the previous one
    args = (out.position_embeddings,)
    assert not torch.equal(out.hidden_states[1], out.hidden_states[2])
    with torch.no_grad():
        valid = torch.ones(2, 3, 2)
        ref = decoder.get_reference_points(out.spatial_shapes, valid)
        shapes = torch.tensor(out.spatial_shapes)
        starts = torch.tensor(out.level_start_index)
        again = decoder.layers[1](out.hidden_states[1], *args, ref, shapes, starts, None, out.spatial_shapes)
    torch.testing.assert_close(again, out.hidden_states[2])


def test_padding_mask_is_returned_with_a_pixel_mask():
    decoder, feats = _decoder(num_layers=1), _features(64, 64)
    pixel_mask = torch.ones(2, 64, 64)
    pixel_mask[1, :, 32:] = 0
    with torch.no_grad():
        out = decoder(feats, pixel_mask=pixel_mask, output_hidden_states=True)
    assert out.padding_mask.shape == (2, 4 + 16 + 64)
    assert not out.padding_mask[0].any()
    assert out.padding_mask[1, :4].tolist() == [False, True, False, True]  # stride-32 level, 2x2
