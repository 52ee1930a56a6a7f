"""What ``--recipe`` gives each model: optimizer groups (members, rates, decay), optimizer and schedule.

``snapshot()`` records it on the tiny preset of every registered paper model; the committed
``tests/fixtures/recipes/parameter_groups.json`` holds the snapshot taken before the recipes moved next to
their models (ReLA's: when its recipe was added), and ``tests/training/test_recipe_snapshot.py`` compares against it. Regenerate (only for a
deliberate, documented change) with ``PYTHONPATH=src python tests/training/recipe_snapshot.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel

import refseg  # noqa: F401  (registers the models)
from refseg.training import available_recipes, build_optimizer, get_recipe

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recipes" / "parameter_groups.json"
MODEL_TYPES = ("instalign", "instancevg", "metris", "presence_plurality", "rela")
# (step, total_steps, steps_per_epoch) at which each schedule's factor is recorded
SCHEDULE_POINTS = ((0, 100, 10), (1, 100, 10), (9, 100, 10), (50, 100, 10), (69, 100, 10), (70, 100, 10))
SCHEDULE_POINTS += ((99, 100, 10), (100, 100, 10), (31, 40, 2))


def tiny_model(model_type: str) -> torch.nn.Module:
    """The ``tiny`` preset of ``model_type`` with its default (paper) switches."""
    torch.manual_seed(0)
    return AutoModel.from_config(type(AutoConfig.for_model(model_type)).preset("tiny"))


def recipe_snapshot(model: torch.nn.Module, recipe) -> dict:
    """Groups in optimizer order (name, lr, weight decay, sorted member names), optimizer settings, schedule."""
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, recipe)
    groups = [
        {
            "name": g["name"],
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
            "params": sorted(names[id(p)] for p in g["params"]),
        }
        for g in optimizer.param_groups
    ]
    defaults = optimizer.defaults
    return {
        "optimizer": type(optimizer).__name__,
        "betas": list(defaults["betas"]),
        "eps": defaults["eps"],
        "amsgrad": defaults["amsgrad"],
        "max_grad_norm": recipe.max_grad_norm,
        "schedule": [recipe.lr_factor(*point) for point in SCHEDULE_POINTS],
        "groups": groups,
    }


def snapshot(model_types=MODEL_TYPES, recipes: dict[str, list[str]] | None = None) -> dict:
    """``{model_type: {recipe: recipe_snapshot}}`` on the tiny presets."""
    out = {}
    for model_type in model_types:
        model = tiny_model(model_type)
        names = recipes[model_type] if recipes else available_recipes(model_type)
        out[model_type] = {name: recipe_snapshot(model, get_recipe(name, model_type)) for name in names}
    return out


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
