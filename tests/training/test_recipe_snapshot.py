"""``--recipe`` gives every model the parameter groups, rates, optimizer and schedule recorded before the
recipes moved next to their models (``tests/fixtures/recipes/parameter_groups.json``)."""

import json

import pytest

from tests.training.recipe_snapshot import FIXTURE, MODEL_TYPES, snapshot

EXPECTED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_recipes_give_the_recorded_groups_rates_and_schedules(model_type):
    recorded = EXPECTED[model_type]
    now = snapshot([model_type], {model_type: sorted(recorded)})[model_type]
    for name, expected in recorded.items():
        got = now[name]
        assert [(g["name"], g["lr"], g["weight_decay"]) for g in got["groups"]] == [
            (g["name"], g["lr"], g["weight_decay"]) for g in expected["groups"]
        ], name
        for got_group, expected_group in zip(got["groups"], expected["groups"]):
            moved = set(got_group["params"]) ^ set(expected_group["params"])
            assert not moved, f"{model_type} {name} {got_group['name']}: {sorted(moved)[:5]}"
        assert got == expected, name


def test_the_snapshot_covers_every_paper_recipe_and_both_kinds_of_group():
    assert set(EXPECTED) == set(MODEL_TYPES)
    assert all("paper" in recipes and "generic" in recipes for recipes in EXPECTED.values())
    groups = {g["name"] for g in EXPECTED["presence_plurality"]["paper"]["groups"]}
    assert groups == {"backbone", "backbone/no_decay", "rest", "rest/no_decay"}
    assert [g["name"] for g in EXPECTED["instancevg"]["paper"]["groups"]] == ["beit3", "rest"]
