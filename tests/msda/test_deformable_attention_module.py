import math

import torch

from refseg.modeling.deformable_attention import MultiScaleDeformableAttention


def _shapes(shapes):
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes.prod(-1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return spatial_shapes, level_start_index, int(areas.sum())


def test_init_matches_deformable_detr():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=2, num_points=3)
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.bias) == 0
    assert torch.count_nonzero(attn.value_proj.bias) == 0
    assert torch.count_nonzero(attn.output_proj.bias) == 0
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    # 4 heads: directions 0, 90, 180, 270 degrees; point p sits at distance p + 1
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for head in range(4):
        for level in range(2):
            for point in range(3):
                torch.testing.assert_close(
                    bias[head, level, point], directions[head] * (point + 1), atol=1e-6, rtol=0
                )
    # 8 heads: diagonal directions are scaled so the larger coordinate is 1
    attn8 = MultiScaleDeformableAttention(embed_dim=16, num_heads=8, num_levels=1, num_points=1)
    torch.testing.assert_close(attn8.sampling_offsets.bias.view(8, 2)[1], torch.tensor([1.0, 1.0]))
    # Xavier-uniform bound for the projections
    bound = math.sqrt(6.0 / (16 + 16))
    assert attn.value_proj.weight.abs().max() <= bound
    assert attn.value_proj.weight.std() > 0


def test_matches_transformers_deformable_detr_attention():
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention,
    )

    config = DeformableDetrConfig(d_model=32, num_feature_levels=2)
    theirs = DeformableDetrMultiscaleDeformableAttention(config, num_heads=4, n_points=3).eval()
    ours = MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=2, num_points=3)
    with torch.no_grad():
        for module in (ours.sampling_offsets, ours.attention_weights, ours.value_proj, ours.output_proj):
            module.weight.normal_(0, 0.2)
            module.bias.normal_(0, 0.2)
    theirs.load_state_dict(ours.state_dict())
    shapes = [(5, 7), (3, 2)]
    spatial_shapes, level_start_index, seq_len = _shapes(shapes)
    query, value = torch.randn(2, 6, 32), torch.randn(2, seq_len, 32)
    reference_points = torch.rand(2, 6, 2, 2)
    padding = torch.rand(2, seq_len) < 0.3
    expected, _ = theirs(
        query,
        attention_mask=~padding,
        encoder_hidden_states=value,
        reference_points=reference_points,
        spatial_shapes=spatial_shapes,
        spatial_shapes_list=shapes,
        level_start_index=level_start_index,
    )
    got = ours(query, reference_points, value, spatial_shapes, level_start_index, padding, shapes)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # box reference points (cx, cy, w, h)
    boxes = torch.cat([torch.rand(2, 6, 2, 2), torch.rand(2, 6, 2, 2) * 0.5], -1)
    expected, _ = theirs(
        query,
        encoder_hidden_states=value,
        reference_points=boxes,
        spatial_shapes=spatial_shapes,
        spatial_shapes_list=shapes,
        level_start_index=level_start_index,
    )
    torch.testing.assert_close(
        ours(query, boxes, value, spatial_shapes, level_start_index), expected, atol=1e-5, rtol=1e-5
    )


def _identity_attention():
    attn = MultiScaleDeformableAttention(embed_dim=2, num_heads=1, num_levels=1, num_points=1)
    with torch.no_grad():
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(2))
            proj.bias.zero_()
        attn.sampling_offsets.bias.zero_()
    return attn


def test_output_equals_explicit_bilinear_sample():
    attn = _identity_attention()
    spatial_shapes, level_start_index, _ = _shapes([(2, 3)])
    # value[y, x] = (10 * y + x + 1, -x)
    value = torch.tensor([[[10.0 * y + x + 1, -float(x)] for y in range(2) for x in range(3)]])
    query = torch.randn(1, 3, 2)
    # pixel centre of (y=1, x=2); halfway between (0,0) and (0,1); a quarter outside the left border
    reference_points = torch.tensor([[[[2.5 / 3, 1.5 / 2]], [[1.0 / 3, 0.5 / 2]], [[0.25 / 3, 0.5 / 2]]]])
    out = attn(query, reference_points, value, spatial_shapes, level_start_index)
    # third point: x = 0.25 - 0.5 = -0.25, so 0.75 of pixel (0, 0) = (1, 0) and 0.25 of zero padding
    expected = torch.tensor([[[13.0, -2.0], [1.5, -0.5], [0.75, 0.0]]])
    torch.testing.assert_close(out, expected)
    # an offset of half a pixel to the right (the bias is in pixels of the level)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([0.5, 0.0]))
    out = attn(query[:, :1], reference_points[:, :1], value, spatial_shapes, level_start_index)
    # x = (2.5 + 0.5) - 0.5 = 2.5: half of pixel (1, 2), half zero padding
    torch.testing.assert_close(out, torch.tensor([[[6.5, -1.0]]]))


def test_padding_mask_zeroes_padded_values():
    attn = MultiScaleDeformableAttention(embed_dim=8, num_heads=2, num_levels=2, num_points=2)
    spatial_shapes, level_start_index, seq_len = _shapes([(4, 4), (2, 2)])
    query, value = torch.randn(1, 5, 8), torch.randn(1, seq_len, 8)
    reference_points = torch.rand(1, 5, 2, 2)
    padding = torch.zeros(1, seq_len, dtype=torch.bool)
    padding[0, 10:16] = True
    padding[0, 18:] = True
    masked = attn(query, reference_points, value, spatial_shapes, level_start_index, padding)
    changed = value.clone()
    changed[padding] = 1e3 * torch.randn(int(padding.sum()), 8)
    assert torch.equal(
        masked, attn(query, reference_points, changed, spatial_shapes, level_start_index, padding)
    )
    # projecting to zero at padded positions is the same as masking
    with torch.no_grad():
        projected = attn.value_proj(value).masked_fill(padding[..., None], 0.0)
    attn_id = attn
    attn_id.value_proj = torch.nn.Identity()
    torch.testing.assert_close(
        masked, attn_id(query, reference_points, projected, spatial_shapes, level_start_index)
    )
