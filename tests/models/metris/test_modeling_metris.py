"""MetrisForReferringSegmentation: shapes, the guidance sets and switches of Tables 5, 6, 8, padding invariance,
input validation, losses and gradients, save/load and the Auto classes."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

import refseg  # noqa: F401  (registers the Auto classes)
from refseg.models.metris.configuration_metris import MetrisConfig
from refseg.models.metris.modeling_metris import MetrisForReferringSegmentation, MetrisOutput

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread

SIZE, LENGTH = 64, 7  # 64x64 -> a 2x2 stride-32 grid (N = 4), decoder output 16x16


def config(**overrides) -> MetrisConfig:
    return MetrisConfig.preset("tiny", **overrides)


def build(**overrides) -> MetrisForReferringSegmentation:
    torch.manual_seed(0)
    return MetrisForReferringSegmentation(config(**overrides)).eval()


def make_inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    input_ids = torch.randint(5, 100, (batch, LENGTH), generator=generator)
    input_ids[:, 0] = 2  # [CLS]
    attention_mask = torch.ones(batch, LENGTH, dtype=torch.long)
    attention_mask[-1, LENGTH - 2 :] = 0
    input_ids[-1, LENGTH - 2 :] = 0
    return pixel_values, input_ids, attention_mask


def make_labels(batch: int = 2):
    first = torch.zeros(2, SIZE, SIZE)
    first[0, :20, :20] = 1.0
    first[1, 40:, 40:] = 1.0
    return [first] + [torch.zeros(0, SIZE, SIZE) for _ in range(batch - 1)]


def test_output_shapes_and_tuple_output():
    model = build()
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, output_attentions=True)
    assert isinstance(out, MetrisOutput) and out.loss is None and out.loss_dict is None
    assert out.semantic_mask_logits.shape == (2, 16, 16)
    assert out.mask_logits.shape == (2, 2, 16, 16)
    torch.testing.assert_close(out.semantic_mask_logits, out.mask_logits[:, 1] - out.mask_logits[:, 0])
    assert out.no_target_logits.shape == (2,)
    assert out.relevance_scores.shape == (2, LENGTH, 4) and out.curated_mask.shape == (2, LENGTH, 4)
    assert torch.all(out.curated_mask.sum(-1) == 2)  # ceil(0.3 * 4)
    assert out.visual_expression.shape == (2, LENGTH, 32) and out.language_expression.shape == (2, LENGTH, 32)
    assert torch.all(out.visual_expression[1, LENGTH - 2 :] == 0)
    assert out.contrastive_logits.shape == (2, 2, 2)
    assert out.refinement_attentions.shape == (2, 4, LENGTH, 4)
    assert [tuple(a.shape) for a in out.decoder_attentions] == [
        (2, 4, n, 2 * LENGTH) for n in (4, 16, 64, 256)
    ]  # full guidance set: K = 2L at every stage
    for attention in out.decoder_attentions:  # padded guidance tokens get no attention
        assert torch.all(attention[1, :, :, LENGTH - 2 : LENGTH] == 0)
        assert torch.all(attention[1, :, :, 2 * LENGTH - 2 :] == 0)
    with torch.no_grad():
        as_tuple = model(pixel_values, input_ids, attention_mask, return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.semantic_mask_logits)


def test_padded_tokens_change_nothing():
    model = build()
    pixel_values, input_ids, attention_mask = make_inputs(batch=1)
    attention_mask[:] = 1
    padded_ids = torch.cat([input_ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([attention_mask, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model(pixel_values, input_ids, attention_mask)
        long = model(pixel_values, padded_ids, padded_mask)
    for name in ("semantic_mask_logits", "no_target_logits", "contrastive_logits"):
        torch.testing.assert_close(getattr(long, name), getattr(short, name), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        long.visual_expression[:, :LENGTH], short.visual_expression, rtol=1e-4, atol=1e-5
    )
    assert torch.equal(long.curated_mask[:, :LENGTH], short.curated_mask)


def test_loss_terms_and_gradients():
    model = build().train()
    pixel_values, input_ids, attention_mask = make_inputs()
    out = model(pixel_values, input_ids, attention_mask, mask_labels=make_labels())
    assert set(out.loss_dict) == {"loss_seg", "loss_cl", "loss_nt"}
    cfg = model.config
    expected = (
        cfg.lambda_seg * out.loss_dict["loss_seg"]
        + cfg.lambda_cl * out.loss_dict["loss_cl"]
        + cfg.lambda_nt * out.loss_dict["loss_nt"]
    )
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    extractor = model.model.visual_expression_extractor
    for name, param in (
        ("phi^V", extractor.vision_embedding.weight),
        ("phi^L", extractor.text_embedding.weight),
        ("tau", model.pixel_contrastive_loss.tau),
        ("no-target", model.no_target_classifier.mlp[0].weight),
        ("text encoder", model.model.text_encoder.model.embeddings.word_embeddings.weight),
        ("backbone", next(model.model.backbone.parameters())),
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_contrastive_loss_uses_the_union_mask_and_the_cls_row():
    model = build()
    pixel_values, input_ids, attention_mask = make_inputs()
    labels = make_labels()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    union = torch.stack([labels[0].amax(0), torch.zeros(SIZE, SIZE)])
    logits = out.relevance_scores[:, 0].reshape(2, 2, 2) / model.pixel_contrastive_loss.tau
    expected = model.pixel_contrastive_loss(logits, union)
    torch.testing.assert_close(out.loss_dict["loss_cl"], expected)


@pytest.mark.parametrize(
    "guidance, keys",
    [("pure_le", LENGTH), ("enhanced_le", LENGTH), ("ve", LENGTH), ("enhanced_le_all_pixels", LENGTH + 4)],
)
def test_table5_guidance_sets(guidance, keys):
    model = build(guidance=guidance)
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(
            pixel_values, input_ids, attention_mask, output_attentions=True, mask_labels=make_labels()
        )
    assert out.decoder_attentions[0].shape[-1] == keys
    has_ve = guidance == "ve"
    assert (model.model.visual_expression_extractor is not None) == has_ve
    assert (out.visual_expression is not None) == has_ve
    assert ("loss_cl" in out.loss_dict) == has_ve
    assert (model.model.enhancer is None) == (guidance == "pure_le")
    if guidance == "pure_le":  # the guidance is the text encoder's output itself
        with torch.no_grad():
            q_l = model.model.text_encoder(input_ids, attention_mask)
        torch.testing.assert_close(out.language_expression, q_l)
    if guidance == "enhanced_le_all_pixels":  # the N vision tokens are never masked
        assert torch.all(out.decoder_attentions[0][1, :, :, LENGTH:].sum(-1) > 0)


def test_table6b_global_and_local_cues():
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        no_local = build(use_local_cues=False)(
            pixel_values, input_ids, attention_mask, output_attentions=True
        )
        no_global = build(use_global_cue=False)(
            pixel_values, input_ids, attention_mask, output_attentions=True
        )
    assert torch.all(no_local.visual_expression[:, 1:] == 0) and torch.all(
        no_local.visual_expression[:, 0] != 0
    )
    assert torch.all(no_global.visual_expression[:, 0] == 0) and torch.all(
        no_global.visual_expression[0, 1:] != 0
    )
    # the decoder does not attend to the visual tokens of unused cues
    assert torch.all(no_local.decoder_attentions[0][:, :, :, LENGTH + 1 :] == 0)
    assert torch.all(no_global.decoder_attentions[0][:, :, :, LENGTH] == 0)
    with pytest.raises(StrictDataclassError, match="use_global_cue and use_local_cues"):
        config(use_global_cue=False, use_local_cues=False)


def test_table6a_and_table8_switches_change_the_output():
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        reference = build()(pixel_values, input_ids, attention_mask)
        for switch in (
            {"curation": False},
            {"adaptive_refinement": False},
            {"relationship_modeling": False},
            {"dynamic_mask_in_aggregation": False},
            {"curation_ratio": 1.0},
        ):
            out = build(**switch)(pixel_values, input_ids, attention_mask)
            assert not torch.allclose(out.semantic_mask_logits, reference.semantic_mask_logits), switch
    assert build(adaptive_refinement=False).model.visual_expression_extractor.refinement is None
    assert build(relationship_modeling=False).model.visual_expression_extractor.relationship is None
    with torch.no_grad():
        assert bool(build(curation=False)(pixel_values, input_ids, attention_mask).curated_mask.all())


def test_table8a_without_contrastive_loss():
    model = build(use_contrastive_loss=False)
    assert model.pixel_contrastive_loss is None
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=make_labels())
    assert set(out.loss_dict) == {"loss_seg", "loss_nt"} and out.contrastive_logits is None
    torch.testing.assert_close(out.loss, 2.0 * out.loss_dict["loss_seg"] + 0.1 * out.loss_dict["loss_nt"])


def test_bce_mask_loss_and_no_target_head_off():
    model = build(mask_loss="bce", no_target_head=False)
    assert model.no_target_classifier is None and model.mask_head.out_channels == 1
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=make_labels())
    assert out.mask_logits.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out.semantic_mask_logits, out.mask_logits[:, 0])
    assert torch.all(out.no_target_logits == float("-inf")) and torch.all(out.no_target_logits.sigmoid() == 0)
    assert set(out.loss_dict) == {"loss_seg", "loss_cl"}


def test_input_validation_names_the_problem():
    model = build()
    pixel_values, input_ids, attention_mask = make_inputs()
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) 'labels'"):
        model(pixel_values, input_ids, attention_mask, labels=make_labels())
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(2, 3, 48, 64), input_ids, attention_mask)
    with pytest.raises(ValueError, match="pixel_values must be a \\(B, 3, H, W\\)"):
        model(torch.randn(2, 64, 64), input_ids, attention_mask)
    with pytest.raises(
        ValueError, match="input_ids has batch size 1 but pixel_values has 2; pass one sentence"
    ):
        model(pixel_values, input_ids[:1], attention_mask[:1])
    with pytest.raises(ValueError, match="attention_mask"):
        model(pixel_values, input_ids, attention_mask[:, :3])
    bad_mask = attention_mask.clone()
    bad_mask[0, 0] = 0
    with pytest.raises(ValueError, match="first token"):
        model(pixel_values, input_ids, bad_mask)
    with pytest.raises(ValueError, match="mask_labels\\[1\\]"):
        model(
            pixel_values, input_ids, attention_mask, mask_labels=[torch.zeros(1, 64, 64), torch.zeros(32, 32)]
        )


def test_config_validation_and_paper_defaults():
    paper = MetrisConfig()
    assert (paper.image_size, paper.max_text_length, paper.curation_ratio, paper.hidden_size) == (
        480,
        20,
        0.3,
        768,
    )
    assert paper.backbone_config.embed_dim == 128 and list(paper.backbone_config.depths) == [2, 2, 18, 2]
    assert paper.backbone_config.window_size == 12
    assert paper.text_config.model_type == "bert" and paper.text_config.vocab_size == 30522
    assert (paper.guidance, paper.encoder_fusion, paper.use_contrastive_loss, paper.no_target_head) == (
        "full",
        "pwam",
        True,
        False,
    )
    assert (paper.lambda_seg, paper.lambda_cl, paper.lambda_nt, paper.tau_init) == (2.0, 1.0, 0.1, 1.0)
    assert MetrisConfig.preset("paper").to_dict() == paper.to_dict()
    tiny = MetrisConfig.preset("tiny", text_config={"vocab_size": 50}, curation_ratio=0.1)
    assert (
        tiny.text_config.vocab_size == 50
        and tiny.text_config.hidden_size == 32
        and tiny.curation_ratio == 0.1
    )
    for bad, match in (
        ({"guidance": "le"}, "'guidance' expected one of"),
        ({"encoder_fusion": "late"}, "'encoder_fusion' expected one of"),
        ({"curation_ratio": 0.0}, "curation_ratio"),
        ({"image_size": 100}, "'image_size':\n    ValueError: Value has to be divisible by 32"),
        ({"seg_class_weights": [1.0]}, "seg_class_weights"),
    ):
        with pytest.raises(StrictDataclassError, match=match):
            MetrisConfig(**bad)
    with pytest.raises(ValueError, match="unknown preset"):
        MetrisConfig.preset("large")


@pytest.mark.parametrize("fusion", ["pwam", "none"])
def test_encoder_fusion_switch(fusion):
    """``pwam``: the Swin maps depend on the sentence (language gates closed at init); ``none``: plain Swin."""
    model = build(encoder_fusion=fusion)
    backbone = model.model.backbone
    pixel_values, input_ids, attention_mask = make_inputs(batch=1)
    with torch.no_grad():
        text_a = model.model.text_encoder(input_ids, attention_mask)
        text_b = model.model.text_encoder(input_ids.flip(1).clamp(min=5), attention_mask)
        maps_a = backbone(pixel_values, text_a, attention_mask)
        maps_b = backbone(pixel_values, text_b, attention_mask)
        plain = backbone.model(pixel_values).feature_maps
    if fusion == "pwam":
        assert all(torch.all(gate.fc2.weight == 0) for gate in backbone.language_gates.values())
        assert not torch.allclose(maps_a[3], maps_b[3])
    else:
        assert not hasattr(backbone, "pixel_word_attention")
        for a, b, p in zip(maps_a, maps_b, plain):
            assert torch.equal(a, b) and torch.equal(a, p)


def test_pretrained_swin_and_bert_load_into_metris(tmp_path):
    """train.py's --vision/--text_model_name_or_path path: Swin and BERT checkpoints fill METRIS's encoders."""
    from transformers import BertModel, SwinModel

    from refseg.modeling.pretrained import load_pretrained_encoders

    model = build()
    swin = SwinModel(model.config.backbone_config)
    swin.save_pretrained(tmp_path / "swin")
    bert = BertModel(model.config.text_config, add_pooling_layer=False)
    bert.save_pretrained(tmp_path / "bert")
    gates = {k: v.clone() for k, v in model.model.backbone.state_dict().items() if "language_gates" in k}
    reports = load_pretrained_encoders(model, vision=str(tmp_path / "swin"), text=str(tmp_path / "bert"))
    assert reports["vision"].module_path == "model.backbone.model" and reports["text"].loaded_keys
    loaded = model.model.backbone.model.state_dict()
    for key, value in swin.state_dict().items():
        assert torch.equal(loaded[f"swin.{key}"] if f"swin.{key}" in loaded else loaded[key], value), key
    text_state = model.model.text_encoder.model.state_dict()
    assert all(torch.equal(text_state[k], v) for k, v in bert.state_dict().items())
    after = model.model.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in gates.items())  # PWAM and gates are not in the checkpoint


def test_position_encoding_switch_adds_the_sine_embedding_where_documented():
    """``position_encoding`` (beyond the paper): the stride-32 vision tokens entering the enhancer are the
    projection of F_4 plus the 2-D sine embedding, the map entering each decoder stage gets one too, and
    the switch changes nothing else (same parameters, other outputs); off, no embedding is added."""
    from refseg.modeling.position_encoding import SinePositionEmbedding

    pixel_values, input_ids, attention_mask = make_inputs()
    off, on = build(), build(position_encoding=True)
    assert on.state_dict().keys() == off.state_dict().keys()
    on.load_state_dict(off.state_dict())
    seen: dict[str, list[torch.Tensor]] = {"vision": [], "stage_inputs": []}
    on.model.enhancer.register_forward_pre_hook(lambda module, args: seen["vision"].append(args[1]))
    for attention in on.model.decoder.cross_attentions:
        attention.register_forward_pre_hook(lambda module, args: seen["stage_inputs"].append(args[0]))
    features: list[torch.Tensor] = []
    on.model.backbone.register_forward_hook(lambda module, args, out: features.extend(out))
    with torch.no_grad():
        out_on = on(pixel_values, input_ids, attention_mask)
        out_off = off(pixel_values, input_ids, attention_mask)
        f4 = features[3]
        projected = on.model.vision_projection(f4.flatten(2).transpose(1, 2))
        sine = SinePositionEmbedding(on.config.hidden_size // 2)(f4).flatten(2).transpose(1, 2)
        torch.testing.assert_close(seen["vision"][0], projected + sine)
        first_stage = on.model.decoder.input_projection(f4)
        torch.testing.assert_close(
            seen["stage_inputs"][0],
            first_stage + SinePositionEmbedding(on.config.decoder_hidden_dim // 2)(f4),
        )
    assert len(seen["stage_inputs"]) == 4
    assert not torch.allclose(out_on.semantic_mask_logits, out_off.semantic_mask_logits)
    assert off.model.position_embedding is None and off.model.decoder.position_embedding is None
    with pytest.raises(StrictDataclassError, match="position_encoding needs an even"):
        config(position_encoding=True, decoder_hidden_dim=9, num_heads=1)
