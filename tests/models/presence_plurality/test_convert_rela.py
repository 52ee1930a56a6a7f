"""Loading a ReLA-layout checkpoint (built here in ReLA's key names and shapes) into the presence & plurality model."""

import copy

import pytest
import torch
from torch.nn import functional as F

from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.models.presence_plurality.convert_rela import convert_rela_state_dict, load_rela_checkpoint
from tests.models.rela.original_checkpoint import rela_state_dict


def rela_pwam(x, words, l_mask, sd, prefix):
    """ReLA's PWAM forward, written from its definition with Conv1d (x (B, N, C), words (B, Ct, T), mask (B, T, 1))."""
    w = lambda name: (sd[f"{prefix}{name}.weight"], sd[f"{prefix}{name}.bias"])  # noqa: E731
    xt = x.permute(0, 2, 1)
    vis = F.gelu(F.conv1d(xt, *w("vis_project.0")))
    query = F.instance_norm(F.conv1d(xt, *w("image_lang_att.f_query.0"))).permute(0, 2, 1)
    mask = l_mask.permute(0, 2, 1)
    key = F.conv1d(words, *w("image_lang_att.f_key.0")) * mask
    value = F.conv1d(words, *w("image_lang_att.f_value.0")) * mask
    sim = (query @ key) * key.shape[1] ** -0.5 + (1e4 * mask - 1e4)
    out = (sim.softmax(-1) @ value.permute(0, 2, 1)).permute(0, 2, 1)
    lang = F.instance_norm(F.conv1d(out, *w("image_lang_att.W.0")))
    return F.gelu(F.conv1d(vis * lang, *w("project_mm.0"))).permute(0, 2, 1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch.manual_seed(0)
    config = PresencePluralityConfig.preset("tiny")
    model = PresencePluralityForReferringSegmentation(config).eval()
    text_state = model.model.text_encoder.model.state_dict()
    sd = rela_state_dict(config, text_state)
    sd.update(
        {
            "text_encoder.embeddings.position_ids": torch.arange(40)[None],  # saved by transformers < 4.31
            "text_encoder.pooler.dense.weight": torch.randn(32, 32),
            "sem_seg_head.predictor.query_feat.weight": torch.randn(100, config.hidden_dim),
        }
    )
    path = tmp_path_factory.mktemp("rela") / "gres_tiny.pth"
    torch.save({"model": sd, "iteration": 1}, path)
    report = load_rela_checkpoint(model, path)
    return model, sd, report


def test_every_rela_key_is_mapped_or_dropped_on_purpose(converted):
    _, sd, report = converted
    assert report.unexpected == [] and len(report.mapped) + len(report.dropped) == len(sd)
    assert all(
        k.startswith(("sem_seg_head.predictor", "text_encoder.pooler"))
        or k.endswith(("relative_position_index", "position_ids"))
        for k in report.dropped
    )
    # what ReLA cannot provide: the target query, the three heads, Swin's unused final LayerNorm
    assert {k.split(".")[0] for k in report.missing} == {
        "target_query",
        "mask_head",
        "presence_head",
        "plurality_head",
        "model",
    }
    assert [k for k in report.missing if k.startswith("model.")] == [
        "model.backbone.model.swin.layernorm.bias", "model.backbone.model.swin.layernorm.weight"
    ]  # fmt: skip


def test_values_land_in_the_right_places(converted):
    model, sd, _ = converted
    state = model.state_dict()
    qkv = sd["backbone.layers.1.blocks.0.attn.qkv.weight"]
    c = qkv.shape[1]
    block = "model.backbone.model.swin.encoder.layers.1.blocks.0.attention."
    for k, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(state[block + name + ".weight"], qkv[k * c : (k + 1) * c])
    assert torch.equal(
        state["model.backbone.language_gates.2.fc2.weight"], sd["backbone.layers.2.res_gate.2.weight"]
    )
    assert torch.equal(
        state["model.backbone.model.hidden_states_norms.stage4.weight"], sd["backbone.norm3.weight"]
    )
    assert torch.equal(
        state["model.pixel_decoder.layers.1.fc2.weight"],
        sd["sem_seg_head.pixel_decoder.transformer.encoder.layers.1.linear2.weight"],
    )
    assert torch.equal(
        state["model.pixel_decoder.lateral_convs.0.0.weight"],
        sd["sem_seg_head.pixel_decoder.adapter_1.weight"],
    )
    assert torch.equal(
        state["model.text_encoder.model.encoder.layer.1.output.dense.weight"],
        sd["text_encoder.encoder.layer.1.output.dense.weight"],
    )


def test_converted_pwam_computes_relas_pwam(converted):
    """In float64: the instance norms over 10 positions amplify float32 rounding differently on each CPU's
    kernels (up to 1.6e-4 was seen), which would hide or fake a wiring difference."""
    model, sd, _ = converted
    pwam = copy.deepcopy(model.model.backbone.pixel_word_attention[1]).double()
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    x, text = torch.randn(2, 10, 32, dtype=torch.float64), torch.randn(2, 5, 32, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    with torch.no_grad():
        ours = pwam(x, text, mask)
        theirs = rela_pwam(
            x, text.permute(0, 2, 1), mask[:, :, None].double(), sd, "backbone.layers.1.fusion."
        )
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)


def test_converted_model_runs_and_unknown_keys_are_errors(converted):
    model, sd, _ = converted
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 64, 64), input_ids=torch.randint(3, 100, (1, 6)))
    assert torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match="have no mapping"):
        convert_rela_state_dict({**sd, "backbone.something_new.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "backbone.layers.0.blocks.0.attn.relative_position_index",
            torch.zeros(49, 49, dtype=torch.long),
            "7x7",
        ),
        ("text_encoder.embeddings.position_ids", torch.arange(1, 41)[None], "0, 1, 2"),
    ],
)
def test_recomputed_buffers_must_hold_what_refseg_recomputes(converted, key, value, message):
    _, sd, _ = converted
    with pytest.raises(ValueError, match=message):
        convert_rela_state_dict({**sd, key: value})
