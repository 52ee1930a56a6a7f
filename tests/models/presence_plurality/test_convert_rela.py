"""Loading a ReLA-layout checkpoint (built here in ReLA's key names and shapes) into the presence & plurality model."""

import copy

import pytest
import torch
from torch.nn import functional as F

from refseg.modeling.pretrained.rela_keys import relative_position_index
from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
)
from refseg.models.presence_plurality.convert_rela import convert_rela_state_dict, load_rela_checkpoint


def rela_state_dict(config, text_state, seed=0):
    """Random tensors under ReLA's detectron2 names, with ReLA's shapes (Conv1d, fused qkv, d2 FPN convs)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    swin, hidden = config.backbone_config, config.hidden_dim
    window, embed = swin.window_size, swin.embed_dim
    text_dim = config.text_config.hidden_size
    sd = {"backbone.patch_embed.proj.weight": r(embed, 3, 4, 4), "backbone.patch_embed.proj.bias": r(embed)}
    sd.update({"backbone.patch_embed.norm.weight": r(embed), "backbone.patch_embed.norm.bias": r(embed)})
    for i, (depth, heads) in enumerate(zip(swin.depths, swin.num_heads)):
        c = embed * 2**i
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}."
            sd.update(
                {
                    b + "norm1.weight": r(c),
                    b + "norm1.bias": r(c),
                    b + "norm2.weight": r(c),
                    b + "norm2.bias": r(c),
                }
            )
            sd.update({b + "attn.qkv.weight": r(3 * c, c), b + "attn.qkv.bias": r(3 * c)})
            sd.update({b + "attn.proj.weight": r(c, c), b + "attn.proj.bias": r(c)})
            sd[b + "attn.relative_position_bias_table"] = r((2 * window - 1) ** 2, heads)
            sd[b + "attn.relative_position_index"] = relative_position_index(window)
            sd.update({b + "mlp.fc1.weight": r(4 * c, c), b + "mlp.fc1.bias": r(4 * c)})
            sd.update({b + "mlp.fc2.weight": r(c, 4 * c), b + "mlp.fc2.bias": r(c)})
        f = f"backbone.layers.{i}.fusion."
        for name, cin in (
            ("vis_project.0", c), ("project_mm.0", c), ("image_lang_att.f_query.0", c),
            ("image_lang_att.f_key.0", text_dim), ("image_lang_att.f_value.0", text_dim), ("image_lang_att.W.0", c),
        ):  # fmt: skip
            sd.update({f + name + ".weight": r(c, cin, 1), f + name + ".bias": r(c)})
        if i < 3:
            d = f"backbone.layers.{i}."
            sd.update(
                {d + "downsample.reduction.weight": r(2 * c, 4 * c), d + "downsample.norm.weight": r(4 * c)}
            )
            sd.update(
                {
                    d + "downsample.norm.bias": r(4 * c),
                    d + "res_gate.0.weight": r(c, c),
                    d + "res_gate.2.weight": r(c, c),
                }
            )
        sd.update({f"backbone.norm{i}.weight": r(c), f"backbone.norm{i}.bias": r(c)})
    p = "sem_seg_head.pixel_decoder."
    for k, c in enumerate([embed * 8, embed * 4, embed * 2]):
        sd.update({f"{p}input_proj.{k}.0.weight": r(hidden, c, 1, 1), f"{p}input_proj.{k}.0.bias": r(hidden)})
        sd.update({f"{p}input_proj.{k}.1.weight": r(hidden), f"{p}input_proj.{k}.1.bias": r(hidden)})
    sd[f"{p}transformer.level_embed"] = r(3, hidden)
    heads, points, ffn = config.num_heads, config.pixel_decoder_num_points, config.pixel_decoder_ffn_dim
    for k in range(config.pixel_decoder_layers):
        e = f"{p}transformer.encoder.layers.{k}."
        for name, shape in (
            ("self_attn.sampling_offsets", (heads * 3 * points * 2, hidden)), ("self_attn.attention_weights", (heads * 3 * points, hidden)),
            ("self_attn.value_proj", (hidden, hidden)), ("self_attn.output_proj", (hidden, hidden)),
            ("linear1", (ffn, hidden)), ("linear2", (hidden, ffn)),
        ):  # fmt: skip
            sd.update({e + name + ".weight": r(*shape), e + name + ".bias": r(shape[0])})
        for name in ("norm1", "norm2"):
            sd.update({e + name + ".weight": r(hidden), e + name + ".bias": r(hidden)})
    sd.update({f"{p}adapter_1.weight": r(hidden, embed, 1, 1), f"{p}adapter_1.norm.weight": r(hidden)})
    sd.update({f"{p}adapter_1.norm.bias": r(hidden), f"{p}layer_1.weight": r(hidden, hidden, 3, 3)})
    sd.update({f"{p}layer_1.norm.weight": r(hidden), f"{p}layer_1.norm.bias": r(hidden)})
    sd.update(
        {
            f"{p}mask_features.weight": r(config.mask_dim, hidden, 1, 1),
            f"{p}mask_features.bias": r(config.mask_dim),
        }
    )
    sd.update(
        {f"text_encoder.{k}": r(*v.shape) if v.is_floating_point() else v for k, v in text_state.items()}
    )
    sd.update(
        {
            "text_encoder.embeddings.position_ids": torch.arange(40)[None],  # saved by transformers < 4.31
            "text_encoder.pooler.dense.weight": r(text_dim, text_dim),
            "sem_seg_head.predictor.query_feat.weight": r(100, hidden),
        }
    )
    return sd


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
