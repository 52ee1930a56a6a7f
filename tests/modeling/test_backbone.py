import pytest
import torch
from transformers import BertConfig, SwinConfig

from refseg.modeling.backbone import VisionBackbone, build_vision_backbone


def tiny_swin(**kw) -> SwinConfig:
    kwargs = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4, image_size=64)
    kwargs.update(kw)
    return SwinConfig(**kwargs)


def test_four_stages_at_strides_4_to_32():
    config = tiny_swin()
    assert config.out_features == ["stage4"]  # transformers' default
    backbone = build_vision_backbone(config)
    assert config.out_features == ["stage4"]  # the given config is not modified
    assert isinstance(backbone, VisionBackbone)
    assert backbone.channels == [16, 32, 64, 128] and backbone.strides == [4, 8, 16, 32]
    feats = backbone(torch.randn(2, 3, 64, 64))
    assert isinstance(feats, list)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]


def test_non_multiple_sizes_are_padded():
    backbone = build_vision_backbone(tiny_swin())
    feats = backbone(torch.randn(1, 3, 96, 80))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 20), (12, 10), (6, 5), (3, 3)]
    feats = backbone(torch.randn(1, 3, 90, 70))  # not even a multiple of the patch size
    assert [tuple(f.shape[-2:]) for f in feats] == [(23, 18), (12, 9), (6, 5), (3, 3)]


def test_paper_window_12_at_480():
    # Swin-B's window (12) and pretraining size (384) with a tiny width/depth; 480x480 as in the paper
    backbone = build_vision_backbone(tiny_swin(window_size=12, image_size=384))
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 480, 480))
    assert [tuple(f.shape[-2:]) for f in feats] == [(120, 120), (60, 60), (30, 30), (15, 15)]


def test_deterministic_in_eval():
    backbone = build_vision_backbone(tiny_swin()).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        a, b = backbone(x), backbone(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_bad_backbone_configs():
    with pytest.raises(ValueError, match="PreTrainedConfig"):
        build_vision_backbone({"model_type": "swin"})
    with pytest.raises(ValueError, match="at least 4 stages"):
        build_vision_backbone(BertConfig())
