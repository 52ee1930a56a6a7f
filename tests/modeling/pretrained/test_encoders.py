import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    SwinConfig,
    SwinForImageClassification,
    SwinModel,
)

from refseg.modeling.backbone import build_vision_backbone
from refseg.modeling.pretrained import load_pretrained_encoders
from refseg.modeling.text_encoder import build_text_encoder

SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4, image_size=64)
TEXT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


class Base(nn.Module):
    def __init__(self, swin: SwinConfig, text) -> None:
        super().__init__()
        self.backbone = build_vision_backbone(swin)
        self.text_encoder = build_text_encoder(text)


class Composite(nn.Module):
    """Shaped like a transformers head model: encoders under ``model.model``."""

    def __init__(self, swin: SwinConfig, text) -> None:
        super().__init__()
        self.model = Base(swin, text)
        self.head = nn.Linear(4, 4)


def _assert_same(target: nn.Module, source: nn.Module) -> int:
    target_state, source_state = target.state_dict(), source.state_dict()
    common = [k for k in target_state if k in source_state]
    for key in common:
        assert torch.equal(target_state[key], source_state[key]), key
    return len(common)


@pytest.mark.parametrize("swin_cls", [SwinModel, SwinForImageClassification])
def test_loads_swin_and_roberta_from_local_folders(tmp_path, swin_cls):
    swin_config, text_config = SwinConfig(**SWIN), RobertaConfig(max_position_embeddings=40, **TEXT)
    swin = swin_cls(swin_config)
    swin.save_pretrained(tmp_path / "swin")
    roberta = RobertaForMaskedLM(text_config)
    roberta.save_pretrained(tmp_path / "roberta")

    model = Composite(swin_config, text_config)
    before = model.head.weight.clone()
    reports = load_pretrained_encoders(model, vision=tmp_path / "swin", text=str(tmp_path / "roberta"))

    source_swin = swin if swin_cls is SwinModel else swin.swin
    backbone = model.model.backbone.model
    # SwinBackbone keeps the encoder under ``swin.``; compare stage weights one to one
    for key, value in source_swin.state_dict().items():
        if ("swin." + key) in backbone.state_dict():
            assert torch.equal(backbone.state_dict()["swin." + key], value), key
    assert len(reports["vision"].loaded_keys) == len(source_swin.state_dict())
    assert reports["vision"].module_path == "model.backbone.model"
    # the per-stage output norms are not in an ImageNet Swin checkpoint
    assert reports["vision"].missing_keys and all(
        k.startswith("hidden_states_norms") for k in reports["vision"].missing_keys
    )
    if swin_cls is SwinForImageClassification:
        assert "classifier.weight" in reports["vision"].unexpected_keys

    assert _assert_same(model.model.text_encoder.model, roberta.roberta) == len(
        model.model.text_encoder.model.state_dict()
    )
    assert reports["text"].missing_keys == []
    assert any(k.startswith("lm_head") for k in reports["text"].unexpected_keys)
    assert torch.equal(model.head.weight, before)  # nothing else touched

    # the loaded encoders compute what the checkpoints compute
    ids = torch.randint(4, 60, (1, 6))
    model.eval(), roberta.eval()
    with torch.no_grad():
        expected = roberta.roberta(input_ids=ids).last_hidden_state
        assert torch.allclose(model.model.text_encoder(ids, torch.ones_like(ids)), expected, atol=1e-6)


def test_loads_bert_and_only_one_encoder(tmp_path):
    swin_config, text_config = SwinConfig(**SWIN), BertConfig(**TEXT)
    bert = BertModel(text_config)
    bert.save_pretrained(tmp_path / "bert")
    model = Base(swin_config, text_config)
    swin_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    reports = load_pretrained_encoders(model, text=tmp_path / "bert")
    assert set(reports) == {"text"} and reports["text"].module_path == "text_encoder.model"
    assert _assert_same(model.text_encoder.model, bert) == len(model.text_encoder.model.state_dict())
    assert "pooler.dense.weight" in reports["text"].unexpected_keys
    assert all(torch.equal(v, swin_before[k]) for k, v in model.backbone.state_dict().items())


def test_shape_mismatch_is_a_clear_error(tmp_path):
    SwinModel(SwinConfig(**{**SWIN, "embed_dim": 24})).save_pretrained(tmp_path / "swin")
    model = Base(SwinConfig(**SWIN), RobertaConfig(max_position_embeddings=40, **TEXT))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit the model's vision config.*shape mismatch"):
        load_pretrained_encoders(model, vision=tmp_path / "swin")
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items())  # untouched


def test_window_size_mismatch_is_reported(tmp_path):
    SwinModel(SwinConfig(**{**SWIN, "window_size": 2})).save_pretrained(tmp_path / "swin")
    model = Base(SwinConfig(**SWIN), RobertaConfig(max_position_embeddings=40, **TEXT))
    with pytest.raises(ValueError, match="relative_position_bias_table"):
        load_pretrained_encoders(model, vision=tmp_path / "swin")


def test_missing_or_ambiguous_submodules(tmp_path):
    with pytest.raises(ValueError, match="no VisionBackbone"):
        load_pretrained_encoders(nn.Linear(2, 2), vision=tmp_path)
    two = nn.ModuleDict(
        {
            "a": build_text_encoder(BertConfig(**TEXT)),
            "b": build_text_encoder(BertConfig(**TEXT)),
        }
    )
    bert = BertModel(BertConfig(**TEXT))
    bert.save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="several TextEncoder"):
        load_pretrained_encoders(two, text=tmp_path / "bert")
    reports = load_pretrained_encoders(two, text=tmp_path / "bert", text_module="b")
    assert reports["text"].module_path == "b.model"
    assert _assert_same(two["b"].model, bert) > 0
    with pytest.raises(ValueError, match="expected a VisionBackbone"):
        load_pretrained_encoders(two, vision=tmp_path, vision_module="a")


def test_wrong_kind_of_checkpoint(tmp_path):
    RobertaModel(RobertaConfig(max_position_embeddings=40, **TEXT)).save_pretrained(tmp_path / "roberta")
    model = Base(SwinConfig(**SWIN), BertConfig(**TEXT))
    with pytest.raises(ValueError, match="is a 'roberta' model but the model's vision encoder is 'swin'"):
        load_pretrained_encoders(model, vision=tmp_path / "roberta")
    with pytest.raises(ValueError, match="is a 'roberta' model but the model's text encoder is 'bert'"):
        load_pretrained_encoders(model, text=tmp_path / "roberta")
