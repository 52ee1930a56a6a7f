import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from refseg.modeling.pixel_decoder import MSDeformAttnPixelDecoder, PixelDecoderOutput

CHANNELS = [16, 32, 64, 128]


def tiny_decoder(**kw) -> MSDeformAttnPixelDecoder:
    kwargs = dict(hidden_dim=32, mask_dim=24, num_layers=2, num_heads=4, num_points=2, ffn_dim=64)
    kwargs.update(kw)
    return MSDeformAttnPixelDecoder(CHANNELS, **kwargs)


def features(batch: int, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    """Backbone-like maps for an image of (height, width): ceil division by strides 4..32."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, -(-height // s), -(-width // s), generator=gen)
        for c, s in zip(CHANNELS, [4, 8, 16, 32])
    ]


def test_output_shapes_low_resolution_first():
    decoder = tiny_decoder()
    out = decoder(features(2, 96, 80))
    assert isinstance(out, PixelDecoderOutput)
    assert out.mask_features.shape == (2, 24, 24, 20)
    assert [tuple(f.shape) for f in out.multi_scale_features] == [
        (2, 32, 3, 3),
        (2, 32, 6, 5),
        (2, 32, 12, 10),
    ]


def test_matches_transformers_mask2former_pixel_decoder():
    """Same weights (renamed) give the outputs of transformers' ``Mask2FormerPixelDecoder``."""
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

    config = Mask2FormerConfig(
        feature_size=32,
        mask_feature_size=24,
        encoder_layers=2,
        encoder_feedforward_dim=64,
        num_attention_heads=4,
        dropout=0.0,
    )
    reference = Mask2FormerPixelDecoder(config, feature_channels=CHANNELS).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(p.numel()))
    renames = {"encoder.layers.": "layers.", "adapter_1.": "lateral_convs.0.", "layer_1.": "output_convs.0."}
    state = {}
    for key, value in reference.state_dict().items():
        for old, new in renames.items():
            key = key.replace(old, new)
        state[key] = value
    decoder = tiny_decoder(num_points=4).eval()
    decoder.load_state_dict(state, strict=True)
    feats = features(2, 96, 80)
    with torch.no_grad():
        expected, got = reference(feats), decoder(feats)
    assert torch.allclose(got.mask_features, expected.mask_features, atol=1e-5)
    for g, e in zip(got.multi_scale_features, expected.multi_scale_features, strict=True):
        assert torch.allclose(g, e, atol=1e-5)


def test_structure_follows_mask2former():
    decoder = MSDeformAttnPixelDecoder([128, 256, 512, 1024])  # Swin-B channels, paper defaults
    assert len(decoder.layers) == 6 and decoder.num_levels == 3 and decoder.num_fpn_levels == 1
    assert [p[0].in_channels for p in decoder.input_projections] == [1024, 512, 256]
    assert decoder.input_projections[0][1].num_groups == 32
    assert decoder.layers[0].self_attn.num_points == 4 and decoder.layers[0].self_attn.num_heads == 8
    assert decoder.layers[0].fc1.out_features == 1024 and decoder.mask_projection.out_channels == 256
    assert decoder.level_embed.shape == (3, 256)
    # GroupNorm groups divide small hidden sizes
    assert tiny_decoder(hidden_dim=48, num_heads=4).input_projections[0][1].num_groups == 16


def test_initialisation():
    decoder = tiny_decoder()
    proj = decoder.input_projections[0][0]
    assert torch.count_nonzero(proj.bias) == 0
    bound = (6 / (proj.in_channels + proj.out_channels)) ** 0.5  # xavier-uniform
    assert proj.weight.abs().max() <= bound and proj.weight.abs().max() > 0.5 * bound
    attn = decoder.layers[0].self_attn
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(decoder.mask_projection.bias) == 0


def test_gradients_reach_every_parameter():
    decoder = tiny_decoder()
    # Deformable-DETR init zeroes the offset/attention weights, which blocks the gradient to the query
    # (and so to level_embed) at step 0; perturb them as after a training step.
    with torch.no_grad():
        for layer in decoder.layers:
            nn.init.normal_(layer.self_attn.sampling_offsets.weight, std=0.01)
            nn.init.normal_(layer.self_attn.attention_weights.weight, std=0.01)
    feats = [f.requires_grad_() for f in features(2, 64, 48)]
    out = decoder(feats)
    loss = out.mask_features.square().mean() + sum(f.square().mean() for f in out.multi_scale_features)
    loss.backward()
    no_grad = [n for n, p in decoder.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_gradient_checkpointing_gives_the_same_gradients():
    feats = features(1, 64, 48)
    grads, calls = [], []

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, use_reentrant=False, **kwargs)

    for checkpointing in (False, True):
        torch.manual_seed(0)
        decoder = tiny_decoder().train()
        for layer in decoder.layers:
            layer.gradient_checkpointing = checkpointing
            layer._gradient_checkpointing_func = counting_checkpoint
        decoder(feats).mask_features.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in decoder.parameters()]))
    assert len(calls) == len(decoder.layers)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_deterministic_and_batch_independent():
    decoder = tiny_decoder().eval()
    feats = features(2, 64, 64)
    with torch.no_grad():
        a = decoder(feats)
        b = decoder(feats)
        single = decoder([f[1:] for f in feats])
    assert torch.equal(a.mask_features, b.mask_features)
    assert torch.allclose(a.mask_features[1:], single.mask_features, atol=1e-5)


def test_pixel_mask():
    decoder = tiny_decoder().eval()
    feats = features(1, 64, 64)
    pad = torch.ones(1, 64, 64)
    pad[:, :, 32:] = 0  # right half is padding
    with torch.no_grad():
        plain = decoder(feats)
        full = decoder(feats, pixel_mask=torch.ones(1, 64, 64))
        padded = decoder(feats, pixel_mask=pad)
    assert torch.allclose(plain.mask_features, full.mask_features, atol=1e-5)
    assert torch.isfinite(padded.mask_features).all()
    assert not torch.allclose(plain.mask_features, padded.mask_features, atol=1e-3)


def test_reference_points_are_pixel_centres_scaled_by_valid_ratios():
    # level 0: 2x2 with only the left column valid (valid ratio w = 0.5); level 1: 1x1 fully valid
    valid_ratios = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    ref = MSDeformAttnPixelDecoder.get_reference_points([(2, 2), (1, 1)], valid_ratios)
    assert ref.shape == (1, 5, 2, 2)
    # pixel (row 0, col 0) of level 0: centre (0.5, 0.5) / valid size (1, 2) = (0.5, 0.25) in valid coordinates
    assert ref[0, 0, 0].tolist() == pytest.approx([0.25, 0.25])  # back to level 0: x * 0.5
    assert ref[0, 0, 1].tolist() == pytest.approx([0.5, 0.25])  # level 1 is fully valid
    # the 1x1 level's single pixel sits at the centre
    assert ref[0, 4, 1].tolist() == pytest.approx([0.5, 0.5])
    assert ref[0, 4, 0].tolist() == pytest.approx([0.25, 0.5])


def test_transformer_in_features_four_levels():
    decoder = tiny_decoder(transformer_in_features=4)
    out = decoder(features(1, 64, 64))
    assert decoder.num_fpn_levels == 0 and len(decoder.lateral_convs) == 0
    assert out.mask_features.shape == (1, 24, 16, 16)
    assert [f.shape[-1] for f in out.multi_scale_features] == [2, 4, 8]
