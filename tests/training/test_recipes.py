"""refseg.training.recipes: the papers' parameter groups, optimizers, schedules and clipping on tiny models."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

import refseg  # noqa: F401  (registers the models)
from refseg.training import available_recipes, build_optimizer, get_recipe, parameter_groups
from refseg.training.recipes import GENERIC, LearningRateGroup, TrainingRecipe, frozen_parameters, submodules

MODEL_TYPES = ("instalign", "instancevg", "metris", "presence_plurality", "rela")


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {mt: AutoModel.from_config(type(AutoConfig.for_model(mt)).preset("tiny")) for mt in MODEL_TYPES}


def _assignment(model, recipe):
    """parameter name -> (group name, lr, weight decay); asserts that no parameter is in two groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, tuple[str, float, float]] = {}
    for group in parameter_groups(model, recipe):
        for p in group["params"]:
            name = names[id(p)]
            assert name not in seen, f"{name} is in {seen[name][0]} and {group['name']}"
            seen[name] = (group["name"], group["lr"], group["weight_decay"])
    return seen


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("recipe_name", ["generic", "paper"])
def test_every_trainable_parameter_is_in_exactly_one_group(tiny_models, model_type, recipe_name):
    model = tiny_models[model_type]
    recipe = get_recipe(recipe_name, model_type)
    assignment = _assignment(model, recipe)
    frozen = {id(p) for p in frozen_parameters(model, recipe)}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and id(p) not in frozen}
    assert set(assignment) == trainable and trainable


def test_generic_recipe_matches_the_former_decay_split(tiny_models):
    """generic: AdamW at 1e-4, decay 0.01 on >= 2-d parameters without 'norm' in their name, 0 elsewhere."""
    for model in tiny_models.values():
        assignment = _assignment(model, GENERIC)
        for name, param in model.named_parameters():
            decayed = param.ndim > 1 and "norm" not in name.lower()
            assert assignment[name] == (("rest", 1e-4, 0.01) if decayed else ("rest/no_decay", 1e-4, 0.0))
    optimizer = build_optimizer(tiny_models["instalign"], GENERIC)
    assert isinstance(optimizer, torch.optim.AdamW) and [g["name"] for g in optimizer.param_groups] == [
        "rest",
        "rest/no_decay",
    ]
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-8
    assert GENERIC.max_grad_norm == 1.0 and GENERIC.schedule == "linear" and GENERIC.min_learning_rate == 1e-6


def test_instancevg_recipe_groups_beit3_at_5e_5_and_the_rest_at_5e_4(tiny_models):
    model = tiny_models["instancevg"]
    assignment = _assignment(model, get_recipe("paper", "instancevg"))
    for name, (group, lr, weight_decay) in assignment.items():
        assert weight_decay == 0.0  # the released code: no weight decay at all (no split either)
        if name.startswith("model.encoder."):
            assert (group, lr) == ("beit3", 5e-5), name
        else:
            assert (group, lr) == ("rest", 5e-4), name
    assert assignment["model.encoder.layers.0.attention.query.vision.weight"][0] == "beit3"
    assert assignment["model.encoder.text_embedding.weight"][0] == "beit3"  # the text expert is BEiT-3 too
    assert assignment["class_head.weight"][0] == assignment["model.image_projection.weight"][0] == "rest"
    optimizer = build_optimizer(model, get_recipe("paper", "instancevg"))
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.defaults["amsgrad"] is True and optimizer.defaults["betas"] == (0.9, 0.98)
    assert optimizer.defaults["eps"] == 1e-9 and optimizer.defaults["weight_decay"] == 0.0
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [("beit3", 5e-5), ("rest", 5e-4)]
    assert get_recipe("paper", "instancevg").max_grad_norm == 0.15
    assert get_recipe("paper-refcoco", "instancevg").max_grad_norm == 0.15


def test_presence_plurality_recipe_backbones_at_2_5e_6_everything_else_at_2_5e_5(tiny_models):
    model = tiny_models["presence_plurality"]
    assignment = _assignment(model, get_recipe("paper", "presence_plurality"))
    for name, (group, lr, weight_decay) in assignment.items():
        backbone = name.startswith(("model.backbone.model.", "model.text_encoder.model."))
        assert lr == (2.5e-6 if backbone else 2.5e-5), name
        assert group.split("/")[0] == ("backbone" if backbone else "rest"), name
        assert weight_decay == (0.0 if group.endswith("/no_decay") else 0.01)
    # the pixel-word attention and the gates are new (not pretrained): they train at the higher rate
    assert any(n.startswith("model.backbone.pixel_word_attention.") for n in assignment)
    assert all(
        v[1] == 2.5e-5 for n, v in assignment.items() if n.startswith("model.backbone.language_gates.")
    )
    swin_table = next(n for n in assignment if n.endswith("relative_position_bias_table"))
    assert assignment[swin_table] == ("backbone/no_decay", 2.5e-6, 0.0)
    assert (
        assignment["model.text_encoder.model.embeddings.position_embeddings.weight"][0] == "backbone/no_decay"
    )
    assert assignment["target_query.text_cross_attention.fc1.weight"] == ("rest", 2.5e-5, 0.01)
    assert assignment["target_query.text_cross_attention.fc1.bias"] == (
        "rest",
        2.5e-5,
        0.01,
    )  # LAVT decays biases
    assert type(build_optimizer(model, get_recipe("paper", "presence_plurality"))) is torch.optim.AdamW


def test_metris_recipe_one_rate_no_decay_on_norms_and_position_tables(tiny_models):
    model = tiny_models["metris"]
    assignment = _assignment(model, get_recipe("paper", "metris"))
    assert {lr for _, lr, _ in assignment.values()} == {3e-5}
    norm_params = {
        f"{module_name}.{n}"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.LayerNorm | nn.GroupNorm | nn.BatchNorm2d)
        for n, _ in module.named_parameters(recurse=False)
    }
    assert "model.vision_projection.1.weight" in norm_params  # a LayerNorm whose name has no "norm"
    for name, (group, _, weight_decay) in assignment.items():
        exempt = name in norm_params or "position_bias_table" in name or "position_embeddings" in name
        assert (group, weight_decay) == (("rest/no_decay", 0.0) if exempt else ("rest", 0.01)), name
    recipe = get_recipe("paper", "metris")
    assert recipe.schedule == "poly" and recipe.power == 0.9 and recipe.max_grad_norm == 0.0
    assert recipe.warmup_steps == 0 and recipe.min_learning_rate == 0.0


def test_instalign_paper_recipe_is_the_generic_one():
    """InstAlign Sec. 4.1: AdamW, 1e-4 linearly to 1e-6; the paper states nothing else."""
    paper = get_recipe("paper", "instalign")
    assert paper.name == "paper" and "InstAlign Sec. 4.1" in paper.source
    assert paper == replace(GENERIC, name="paper", source=paper.source)


def test_poly_schedule_at_hand_computed_steps():
    recipe = get_recipe("paper", "presence_plurality")
    assert recipe.lr_factor(0, 10) == 1.0
    assert recipe.lr_factor(5, 10) == pytest.approx(0.5**0.9)  # 0.53589
    assert recipe.lr_factor(9, 10) == pytest.approx(0.1**0.9)  # 0.12589
    assert recipe.lr_factor(10, 10) == 0.0 and recipe.lr_factor(12, 10) == 0.0
    floored = recipe.with_overrides(min_learning_rate=2.5e-6)  # floor 0.1 of the main rate
    assert floored.lr_factor(5, 10) == pytest.approx(0.1 + 0.9 * 0.5**0.9)
    warm = recipe.with_overrides(warmup_steps=2)
    assert [warm.lr_factor(s, 12) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert warm.lr_factor(7, 12) == pytest.approx(0.5**0.9)  # 5 of the 10 decay steps done


def test_linear_schedule_of_the_generic_recipe():
    assert GENERIC.lr_factor(0, 11) == 1.0
    assert GENERIC.lr_factor(11, 11) == pytest.approx(0.01)  # 1e-4 -> 1e-6
    assert GENERIC.lr_factor(5, 11) == pytest.approx(0.01 + 0.99 * (1 - 5 / 11))


def test_instancevg_step_schedule_per_epoch():
    """gRefCOCO: epoch 0 at 0.5 (1 warm-up epoch), epochs 1-5 at 1, x0.1 from the 7th epoch (index 6)."""
    recipe = get_recipe("paper", "instancevg")
    per_epoch = [recipe.lr_factor(epoch * 3 + 1, total_steps=30, steps_per_epoch=3) for epoch in range(10)]
    assert per_epoch == pytest.approx([0.5, 1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1])
    assert recipe.lr_factor(17, 30, 3) == 1.0 and recipe.lr_factor(18, 30, 3) == pytest.approx(0.1)
    refcoco = get_recipe("paper-refcoco", "instancevg")  # 3 warm-up epochs, x0.1 from the 15th of 20
    per_epoch = [refcoco.lr_factor(epoch * 2, 40, 2) for epoch in range(20)]
    assert per_epoch == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 11 + [0.1] * 6)


def test_scheduler_and_optimizer_together_give_each_group_its_rate(tiny_models):
    recipe = get_recipe("paper", "instancevg")
    optimizer = build_optimizer(tiny_models["instancevg"], recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: recipe.lr_factor(s, 6, 2))
    rates = []
    for _ in range(6):
        rates.extend(g["lr"] for g in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([2.5e-5, 2.5e-4] * 2 + [5e-5, 5e-4] * 4)


def test_overrides_scale_the_groups_and_replace_the_other_values():
    recipe = get_recipe("paper", "instancevg").with_overrides(
        learning_rate=1e-3, weight_decay=0.05, betas=(0.8, 0.9), eps=1e-6, max_grad_norm=0.0
    )
    assert recipe.learning_rate == 1e-3 and recipe.groups[0].learning_rate == pytest.approx(1e-4)
    assert (recipe.weight_decay, recipe.betas, recipe.eps, recipe.max_grad_norm) == (
        0.05,
        (0.8, 0.9),
        1e-6,
        0,
    )
    assert get_recipe("paper", "instancevg").with_overrides() == get_recipe("paper", "instancevg")
    with pytest.raises(ValueError, match="warms up per epoch"):
        get_recipe("paper", "instancevg").with_overrides(warmup_steps=10)


def test_recipe_record_and_description():
    recipe = get_recipe("paper", "instancevg")
    record = recipe.to_dict()
    assert record["groups"] == [
        {"name": "beit3", "learning_rate": 5e-5, "modules": ["model.encoder"], "no_decay": None}
    ]
    assert record["model_config"] == {}
    assert record["optimizer"] == "adam" and record["amsgrad"] is True and record["milestones"] == [7]
    assert record["model_types"] == ["instancevg"]
    text = recipe.describe()
    assert "Adam (AMSGrad)" in text and "beit3 5e-05, rest 0.0005" in text and "clip 0.15" in text
    assert "released InstanceVG code" in text


def test_unknown_recipes_and_bad_values_are_refused():
    assert available_recipes("instancevg") == ["generic", "paper", "paper-refcoco"]
    assert available_recipes("metris") == ["generic", "paper", "paper-grefcoco"]
    assert available_recipes("no_such_model") == ["generic"]
    with pytest.raises(
        ValueError,
        match="no training recipe 'paper-refcoco' for model type 'metris'.*generic, paper, paper-grefcoco",
    ):
        get_recipe("paper-refcoco", "metris")
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainingRecipe(name="x", source="y", schedule="cosine")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainingRecipe(name="x", source="y", optimizer="sgd")


def test_first_group_holding_a_parameter_wins_and_frozen_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Linear(2, 1))
    model[2].bias.requires_grad_(False)
    recipe = TrainingRecipe(
        name="t",
        source="test",
        learning_rate=1.0,
        groups=(LearningRateGroup("first", 0.1, ("0",)), LearningRateGroup("also_first", 0.2, ("0", "1"))),
        no_decay="norms_and_position_tables",
    )
    assignment = _assignment(model, recipe)
    assert assignment == {
        "0.weight": ("first", 0.1, 0.01),
        "0.bias": ("first", 0.1, 0.01),
        "1.weight": ("also_first/no_decay", 0.2, 0.0),
        "1.bias": ("also_first/no_decay", 0.2, 0.0),
        "2.weight": ("rest", 1.0, 0.01),
    }
    assert not math.isnan(recipe.lr_factor(0, 1))


def test_groups_select_parameters_by_module_and_refuse_a_missing_one():
    """A group holds every parameter of its submodules, whatever their names; a path the model lacks is an error."""
    model = nn.Module()
    model.encoder = nn.Sequential(nn.Linear(2, 2))
    model.encoder_head = nn.Linear(2, 1)  # its name starts like the group's module: not in the group
    group = LearningRateGroup("encoder", 0.1, ("encoder",))
    assert [id(p) for p in group.parameters(model)] == [id(p) for p in model.encoder.parameters()]
    assignment = _assignment(model, TrainingRecipe(name="t", source="test", groups=(group,)))
    assert assignment["encoder.0.weight"][0] == "encoder" and assignment["encoder_head.weight"][0] == "rest"
    missing = TrainingRecipe(name="t", source="test", groups=(LearningRateGroup("x", 0.1, ("encoder.9",)),))
    with pytest.raises(ValueError, match="learning-rate group 'x': Module has no submodule 'encoder.9'"):
        parameter_groups(model, missing)


def test_metris_grefcoco_recipe_trains_the_no_target_classifier_of_appendix_a(tiny_models):
    """App. A: "For gRefCOCO that contains no-target samples, we used a no-target classifier"."""
    from refseg.models.metris import MetrisConfig

    paper, grefcoco = get_recipe("paper", "metris"), get_recipe("paper-grefcoco", "metris")
    assert paper.model_config == () and dict(grefcoco.model_config) == {"no_target_head": True}
    assert replace(grefcoco, name="paper", source=paper.source, model_config=()) == paper  # same optimisation
    assert MetrisConfig().no_target_head is False  # the RefCOCO configuration of the paper
    with pytest.raises(ValueError, match="'paper-grefcoco' trains metris with no_target_head=True.*=False"):
        grefcoco.check_model_config(MetrisConfig())
    grefcoco.check_model_config(MetrisConfig(no_target_head=True))
    # its classifier's parameters are optimised like every other parameter
    model = tiny_models["metris"]
    assignment = _assignment(model, grefcoco)
    head = [n for n in assignment if n.startswith("no_target_classifier.")]
    assert head and all(assignment[n][1] == 3e-5 for n in head)
    assert "no_target_head=True" in grefcoco.describe() and grefcoco.to_dict()["model_config"] == {
        "no_target_head": True
    }


def _rela_model(text_layers: int):
    """A tiny ReLA whose BERT has ``text_layers`` layers (the released one has 12)."""
    from refseg.models.rela import RelaConfig

    config = RelaConfig.preset("tiny")
    config.text_config.num_hidden_layers = text_layers
    torch.manual_seed(0)
    return AutoModel.from_config(config)


def test_rela_recipe_is_the_released_optimizer():
    """AdamW 1e-5, decay 0.05 except norms / embeddings / Swin tables; BERT layers 0-9 decay everything;
    BERT embeddings and layers 10-11 frozen (in no group, no gradient); clip 0.01."""
    model = _rela_model(12)
    recipe = get_recipe("paper", "rela")
    assignment = _assignment(model, recipe)
    bert = "model.text_encoder.model."
    for name, _ in model.named_parameters():
        if name.startswith(bert + "embeddings.") or any(
            name.startswith(f"{bert}encoder.layer.{i}.") for i in (10, 11)
        ):
            assert name not in assignment, name
        elif name.startswith(bert):
            assert assignment[name] == ("text_encoder", 1e-5, 0.05), name
        else:
            assert assignment[name][1] == 1e-5, name
    # the BERT group decays its LayerNorms (it is one plain group in the released optimizer)
    assert assignment[bert + "encoder.layer.9.output.LayerNorm.weight"] == ("text_encoder", 1e-5, 0.05)
    # detectron2's rule elsewhere: norm layers, nn.Embedding tables and relative-position tables are exempt
    for name in (
        "decoder.query_feat.weight",
        "decoder.query_embed.weight",
        "decoder.level_embed.weight",
        "decoder.heads.decoder_norm.weight",
        "model.pixel_decoder.input_projections.0.1.weight",  # GroupNorm
        "model.backbone.model.swin.encoder.layers.0.blocks.0.attention.relative_position_bias."
        "relative_position_bias_table",
    ):
        assert assignment[name] == ("rest/no_decay", 1e-5, 0.0), name
    # ... but the pixel decoder's level embedding is a plain parameter: decayed, as released
    assert assignment["model.pixel_decoder.level_embed"] == ("rest", 1e-5, 0.05)
    assert assignment["decoder.heads.minimap_embed.bias"] == ("rest", 1e-5, 0.05)
    assert assignment["model.backbone.language_gates.0.fc1.weight"] == ("rest", 1e-5, 0.05)
    optimizer = build_optimizer(model, recipe)
    assert type(optimizer) is torch.optim.AdamW
    assert [(g["name"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("text_encoder", 0.05),
        ("rest", 0.05),
        ("rest/no_decay", 0.0),
    ]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n in model.state_dict() if n.startswith(bert) and n not in assignment} & set(
        dict(model.named_parameters())
    )
    assert len(frozen) == 5 + 2 * 16  # embeddings (3 tables + LayerNorm) and two BERT layers
    assert recipe.max_grad_norm == 0.01 and (recipe.batch_size, recipe.train_steps) == (48, 150_000)
    assert "global batch 48, 150000 steps" in recipe.describe()


def test_rela_recipe_on_a_two_layer_text_encoder_trains_both_layers():
    """The released code trains BERT layers 0-9: a shorter text encoder has every layer trained."""
    model = _rela_model(2)
    assignment = _assignment(model, get_recipe("paper", "rela"))
    assert assignment["model.text_encoder.model.encoder.layer.1.output.dense.weight"][0] == "text_encoder"
    assert "model.text_encoder.model.embeddings.word_embeddings.weight" not in assignment


def test_rela_step_schedule_drops_at_110k_and_140k_of_150k():
    """detectron2's WarmupMultiStepLR (warm-up factor 1): x0.1 from iteration 110000 on, x0.01 from 140000."""
    recipe = get_recipe("paper", "rela")
    assert [recipe.lr_factor(s, 150_000) for s in (0, 109_999, 110_000, 139_999)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1]
    )
    assert recipe.lr_factor(140_000, 150_000) == pytest.approx(0.01)
    # a 15-step run drops at the same fractions: 11/15 and 14/15
    assert [recipe.lr_factor(s, 15) for s in range(15)] == pytest.approx([1.0] * 11 + [0.1] * 3 + [0.01])
    # steps_per_epoch does not matter (milestones are optimizer steps)
    assert recipe.lr_factor(11, 15, steps_per_epoch=4) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="multistep_steps schedule needs train_steps"):
        TrainingRecipe(name="x", source="y", schedule="multistep_steps", milestones=(5,))


def test_module_paths_slice_module_lists_and_refuse_what_is_not_one():
    model = nn.Module()
    model.layers = nn.ModuleList(nn.Linear(1, 1) for _ in range(4))
    model.head = nn.Linear(1, 1)
    assert submodules(model, "layers[:3]") == list(model.layers)[:3]
    assert submodules(model, "layers[-1:]") == [model.layers[3]]
    assert submodules(model, "layers[10:]") == []
    assert submodules(model, "head") == [model.head]
    with pytest.raises(ValueError, match="'head\\[:1\\]': 'head' is a Linear, not a module list"):
        submodules(model, "head[:1]")
    with pytest.raises(ValueError, match="has no submodule 'tail'"):
        submodules(model, "tail[:1]")
    recipe = TrainingRecipe(
        name="t",
        source="test",
        groups=(LearningRateGroup("low", 0.5, ("layers[1:3]",), no_decay="none"),),
        frozen_modules=("layers[3:]",),
        no_decay="generic",
    )
    assignment = _assignment(model, recipe)
    assert assignment["layers.1.bias"] == ("low", 0.5, 0.01)  # the group's own rule: every parameter decays
    assert assignment["layers.0.bias"] == ("rest/no_decay", 1e-4, 0.0)  # the recipe's rule
    assert "layers.3.weight" not in assignment and model.layers[3].weight.requires_grad
    build_optimizer(model, recipe)
    assert not model.layers[3].weight.requires_grad and model.layers[2].weight.requires_grad
    with pytest.raises(ValueError, match="no_decay must be one of"):
        LearningRateGroup("x", 0.1, ("head",), no_decay="norms")
