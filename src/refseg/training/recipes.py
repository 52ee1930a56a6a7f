"""Training recipes: how a model is optimised (optimizer, parameter groups, schedule, clipping).

A :class:`TrainingRecipe` says how a model is optimised, independent of the training loop:

* the optimizer (AdamW, or Adam with AMSGrad) and its betas, epsilon and weight decay;
* learning-rate groups selected by module (:class:`LearningRateGroup`: e.g. the pretrained backbones, the
  parameters of ``model.get_submodule("model.backbone.model")``, at a tenth of the learning rate; a path may
  end in a slice of a module list, ``"model.text_encoder.model.encoder.layer[:10]"``), every other
  trainable parameter in the ``rest`` group;
* modules the recipe never updates (``frozen_modules``: left out of the optimizer and set to
  ``requires_grad=False`` by :func:`build_optimizer`, so that clipping and DDP ignore them too);
* which parameters get no weight decay (``no_decay``, per recipe, or per group): ``"generic"`` (1-d
  parameters and names with ``norm``), ``"norms_and_position_tables"`` (the parameters of normalisation
  layers and position tables, as in LAVT's optimizer), ``"norms_embeddings_and_position_tables"`` (also
  ``nn.Embedding`` tables, as in detectron2's optimizers) or ``"none"``;
* the schedule (:mod:`refseg.training.schedules`) and the gradient-clipping norm (0: none);
* the paper's global batch and number of optimizer steps (``batch_size``, ``train_steps``; 0 where unstated),
  printed with the recipe; ``train.py`` does not impose them;
* the model settings the recipe trains with (``model_config``, e.g. METRIS's no-target classifier on
  gRefCOCO), applied to a model built from scratch and required of a model that is loaded.

Each paper's recipes live next to its model, in ``refseg/models/<model_type>/recipe.py`` (a ``RECIPES`` dict
of name to recipe); :func:`get_recipe` returns a model type's recipe by name: ``generic`` (any model; what
``examples/train.py`` does by default) or one of the model's (``paper``, the recipe of the model's paper or,
for InstanceVG, of the released code its checkpoints were trained with, and variants such as
``paper-refcoco``). :meth:`TrainingRecipe.with_overrides` applies command-line values (a new learning rate
scales every group's rate by the same factor), :func:`parameter_groups` / :func:`build_optimizer` build the
optimizer of a model and :meth:`TrainingRecipe.lr_factor` is the schedule for ``LambdaLR``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .schedules import linear_factor, multistep_steps_factor, multistep_warmup_factor, poly_factor

__all__ = [
    "LearningRateGroup",
    "TrainingRecipe",
    "available_recipes",
    "build_optimizer",
    "frozen_parameters",
    "get_recipe",
    "parameter_groups",
    "submodules",
]

_OPTIMIZERS = ("adamw", "adam")
_SCHEDULES = ("linear", "poly", "multistep", "multistep_steps")
_NO_DECAY_RULES = ("generic", "norms_and_position_tables", "norms_embeddings_and_position_tables", "none")
# parameter names of position tables (Swin's absolute_pos_embed / relative_position_bias_table, BERT's and
# BEiT-3's position_embeddings) that the "norms_and_position_tables" rule keeps free of weight decay
_POSITION_TABLE = re.compile(r"pos_embed|position_embedding|relative_position_bias_table")
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)
# "path[a:b]": the modules a:b of the module list at path
_SLICE = re.compile(r"^(?P<path>.+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def submodules(model: nn.Module, path: str) -> list[nn.Module]:
    """The submodule of ``model`` at the attribute path ``path``, or the modules of a slice of a module list
    (``"model.text_encoder.model.encoder.layer[:10]"``: the first 10 BERT layers, fewer if it has fewer).

    Raises:
        ValueError: if ``model`` has no submodule at the path, or a sliced one is not a module list.
    """
    match = _SLICE.match(path)
    base = match["path"] if match else path
    try:
        module = model.get_submodule(base)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule {base!r}") from None
    if not match:
        return [module]
    if not isinstance(module, (nn.ModuleList, nn.Sequential)):
        raise ValueError(f"{path!r}: {base!r} is a {type(module).__name__}, not a module list to slice")
    start, stop = (int(v) if v else None for v in (match["start"], match["stop"]))
    return list(module)[start:stop]


@dataclass(frozen=True)
class LearningRateGroup:
    """The parameters of the submodules ``modules`` (attribute paths from the task model) train at ``learning_rate``.

    Attributes:
        name: the group's name (kept in the optimizer's ``param_groups`` as ``"name"``).
        learning_rate: the group's initial learning rate.
        modules: attribute paths of submodules of the task model (``model.get_submodule(path)``), e.g.
            ``("model.backbone.model", "model.text_encoder.model")``, or slices of module lists
            (:func:`submodules`); a path the model lacks is an error.
        no_decay: the group's own weight-decay exemption rule (``None``: the recipe's), e.g. ``"none"`` for
            ReLA's text-encoder group, whose LayerNorms decay too.
    """

    name: str
    learning_rate: float
    modules: tuple[str, ...]
    no_decay: str | None = None

    def __post_init__(self) -> None:
        if self.no_decay is not None and self.no_decay not in _NO_DECAY_RULES:
            raise ValueError(f"no_decay must be one of {_NO_DECAY_RULES} or None, got {self.no_decay!r}")

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters of the group's submodules of ``model``.

        Raises:
            ValueError: if ``model`` has no submodule at one of the paths.
        """
        params = []
        for path in self.modules:
            try:
                modules = submodules(model, path)
            except ValueError as error:
                raise ValueError(f"learning-rate group {self.name!r}: {error}") from None
            for module in modules:
                params.extend(module.parameters())
        return params


@dataclass(frozen=True)
class TrainingRecipe:
    """How a model is optimised: optimizer, learning-rate groups, weight decay, schedule, clipping.

    ``learning_rate`` is the rate of the parameters outside every :class:`LearningRateGroup` (the ``rest``
    group). The schedule is ``"linear"`` (warm-up ``warmup_steps``, then linear to ``min_learning_rate``),
    ``"poly"`` (``(1 - t / T) ** power`` per optimizer step, down to ``min_learning_rate``) or
    ``"multistep"`` (epoch-wise: ``warmup_epochs``, then x ``gamma`` at each of ``milestones``, 1-based
    epochs) or ``"multistep_steps"`` (x ``gamma`` from each of ``milestones``, optimizer steps of a
    ``train_steps``-step run, moved proportionally to the run's length). ``max_grad_norm`` 0 means no clipping.
    ``frozen_modules`` (paths as in :class:`LearningRateGroup`) are never updated. ``batch_size`` and
    ``train_steps`` are the paper's global batch and optimizer steps (0: unstated). ``model_config`` holds ``(field, value)`` pairs of the
    model config the recipe trains with (:meth:`check_model_config`).
    """

    name: str
    source: str
    optimizer: str = "adamw"
    learning_rate: float = 1e-4
    groups: tuple[LearningRateGroup, ...] = ()
    weight_decay: float = 0.01
    no_decay: str = "generic"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    schedule: str = "linear"
    min_learning_rate: float = 0.0
    warmup_steps: int = 0
    power: float = 0.9
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    max_grad_norm: float = 0.0
    frozen_modules: tuple[str, ...] = ()
    batch_size: int = 0
    train_steps: int = 0
    model_config: tuple[tuple[str, Any], ...] = ()
    model_types: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        if self.no_decay not in _NO_DECAY_RULES:
            raise ValueError(f"no_decay must be one of {_NO_DECAY_RULES}, got {self.no_decay!r}")
        if self.learning_rate < 0 or self.min_learning_rate < 0 or self.max_grad_norm < 0:
            raise ValueError("learning rates and max_grad_norm must be >= 0")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "multistep_steps" and self.train_steps <= 0:
            raise ValueError(
                f"recipe {self.name!r}: the multistep_steps schedule needs train_steps (its milestones' run length)"
            )
        if self.schedule == "multistep" and self.warmup_steps:
            raise ValueError(
                f"recipe {self.name!r} warms up per epoch (warmup_epochs={self.warmup_epochs}); "
                "a warm-up in steps does not apply to it"
            )

    def with_overrides(
        self,
        *,
        learning_rate: float | None = None,
        min_learning_rate: float | None = None,
        weight_decay: float | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        max_grad_norm: float | None = None,
        warmup_steps: int | None = None,
    ) -> TrainingRecipe:
        """A copy with the given values (``None`` keeps the recipe's).

        A new ``learning_rate`` scales every group's rate by ``learning_rate / self.learning_rate``, so the
        ratios between the groups (e.g. backbone : rest = 1 : 10) stay the paper's.
        """
        changes: dict[str, Any] = {}
        if learning_rate is not None and learning_rate != self.learning_rate:
            scale = learning_rate / self.learning_rate if self.learning_rate > 0 else 0.0
            changes["learning_rate"] = learning_rate
            changes["groups"] = tuple(replace(g, learning_rate=g.learning_rate * scale) for g in self.groups)
        for key, value in (
            ("min_learning_rate", min_learning_rate),
            ("weight_decay", weight_decay),
            ("betas", None if betas is None else tuple(betas)),
            ("eps", eps),
            ("max_grad_norm", max_grad_norm),
            ("warmup_steps", warmup_steps),
        ):
            if value is not None:
                changes[key] = value
        return replace(self, **changes)

    def check_model_config(self, config: Any) -> None:
        """Refuse a model ``config`` that lacks a setting of ``model_config`` (e.g. a head the recipe trains).

        Raises:
            ValueError: naming the field, the recipe's value and the config's.
        """
        for key, value in self.model_config:
            if getattr(config, key, None) != value:
                raise ValueError(
                    f"recipe {self.name!r} trains {config.model_type} with {key}={value!r}, but the model has "
                    f"{key}={getattr(config, key, None)!r}"
                )

    def lr_factor(self, step: int, total_steps: int, steps_per_epoch: int = 1) -> float:
        """The schedule's factor on the initial learning rates at optimizer step ``step`` (0-based)."""
        if self.schedule == "multistep":
            return multistep_warmup_factor(
                step, steps_per_epoch, self.milestones, gamma=self.gamma, warmup_epochs=self.warmup_epochs
            )
        if self.schedule == "multistep_steps":
            return multistep_steps_factor(
                step,
                total_steps,
                self.milestones,
                self.train_steps,
                gamma=self.gamma,
                warmup_steps=self.warmup_steps,
            )
        floor = self.min_learning_rate / self.learning_rate if self.learning_rate > 0 else 1.0
        if self.schedule == "poly":
            return poly_factor(step, total_steps, self.power, warmup_steps=self.warmup_steps, floor=floor)
        return linear_factor(step, total_steps, warmup_steps=self.warmup_steps, floor=floor)

    def describe(self) -> str:
        """One line for logs and model cards: optimizer, rates per group, decay, schedule and clipping."""
        if self.optimizer == "adam":
            optimizer = "Adam" + (" (AMSGrad)" if self.amsgrad else "")
        else:
            optimizer = "AdamW"
        rates = ", ".join(f"{g.name} {g.learning_rate:g}" for g in self.groups)
        rates = f"{rates}, rest {self.learning_rate:g}" if rates else f"{self.learning_rate:g}"
        if self.schedule == "multistep":
            schedule = (
                f"x{self.gamma:g} at epoch(s) {', '.join(map(str, self.milestones))}, "
                f"{self.warmup_epochs} warm-up epoch(s)"
            )
        elif self.schedule == "multistep_steps":
            schedule = (
                f"x{self.gamma:g} at step(s) {', '.join(map(str, self.milestones))} of {self.train_steps} "
                "(at the same fractions of a run of another length)"
            )
        elif self.schedule == "poly":
            schedule = f"poly {self.power:g} per step to {self.min_learning_rate:g}"
        else:
            schedule = f"linear to {self.min_learning_rate:g}"
        if self.warmup_steps:
            schedule += f", {self.warmup_steps} warm-up step(s)"
        clip = f"clip {self.max_grad_norm:g}" if self.max_grad_norm > 0 else "no clipping"
        settings = "".join(f", {key}={value!r}" for key, value in self.model_config)
        exempt = "".join(f"; {g.name}: {g.no_decay}" for g in self.groups if g.no_decay is not None)
        frozen = f", frozen: {', '.join(self.frozen_modules)}" if self.frozen_modules else ""
        paper = [f"global batch {self.batch_size}"] if self.batch_size else []
        paper += [f"{self.train_steps} steps"] if self.train_steps else []
        paper_run = f", paper: {', '.join(paper)}" if paper else ""
        return (
            f"{self.name} ({self.source}): {optimizer} betas {self.betas} eps {self.eps:g}, lr {rates}, "
            f"weight decay {self.weight_decay:g} (no decay: {self.no_decay}{exempt}), {schedule}, {clip}"
            f"{frozen}{paper_run}{settings}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (saved with the training arguments)."""
        data = asdict(self)
        data["groups"] = [{**asdict(g), "modules": list(g.modules)} for g in self.groups]
        data["frozen_modules"] = list(self.frozen_modules)
        data["betas"] = list(self.betas)
        data["milestones"] = list(self.milestones)
        data["model_config"] = dict(self.model_config)
        data["model_types"] = list(self.model_types)
        return data


# examples/train.py's default for every model type: AdamW, 1e-4 linearly to 1e-6, weight decay 0.01 except on
# 1-d parameters and names with "norm", gradient norm clipped at 1.0
GENERIC = TrainingRecipe(
    name="generic",
    source="refseg's default for every model",
    learning_rate=1e-4,
    min_learning_rate=1e-6,
    weight_decay=0.01,
    max_grad_norm=1.0,
)


def _model_recipes(model_type: str) -> Mapping[str, TrainingRecipe]:
    """The ``RECIPES`` of ``refseg.models.<model_type>.recipe`` (empty if the model has none)."""
    if not model_type.isidentifier():
        return {}
    name = f"refseg.models.{model_type}.recipe"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name not in (name, f"refseg.models.{model_type}"):
            raise
        return {}
    return getattr(module, "RECIPES", {})


def available_recipes(model_type: str) -> list[str]:
    """The recipe names for ``model_type``: ``generic`` and the model's own (e.g. ``paper``)."""
    return ["generic", *sorted(_model_recipes(model_type))]


def get_recipe(name: str, model_type: str) -> TrainingRecipe:
    """The recipe ``name`` of ``model_type`` (``generic`` works for every model type).

    Raises:
        ValueError: if the model type has no recipe of that name (the message lists those it has).
    """
    if name == "generic":
        return GENERIC
    recipes = _model_recipes(model_type)
    if name not in recipes:
        raise ValueError(
            f"no training recipe {name!r} for model type {model_type!r}; available: "
            f"{', '.join(available_recipes(model_type))}"
        )
    return replace(recipes[name], model_types=(model_type,))


def _no_decay_names(model: nn.Module, rule: str) -> set[str]:
    """Names of the parameters that get no weight decay under ``rule``."""
    named = dict(model.named_parameters())
    if rule == "none":
        return set()
    if rule == "generic":
        return {n for n, p in named.items() if not (p.ndim > 1 and "norm" not in n.lower())}
    names = {n for n in named if "norm" in n.lower() or _POSITION_TABLE.search(n)}
    embeddings = rule == "norms_embeddings_and_position_tables"
    for module_name, module in model.named_modules():
        if (
            isinstance(module, _NORM_TYPES)
            or type(module).__name__.lower().endswith("norm")
            or (embeddings and isinstance(module, nn.Embedding))
        ):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n, _ in module.named_parameters(recurse=False))
    return names & set(named)


def parameter_groups(model: nn.Module, recipe: TrainingRecipe) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for ``model`` under ``recipe``.

    Every trainable parameter outside the recipe's ``frozen_modules`` lands in exactly one group: the first
    :class:`LearningRateGroup` whose modules hold it, else ``rest``; each of these splits into a decayed part
    and a ``no_decay`` part (``"<group>"`` and ``"<group>/no_decay"``) by the group's rule (the recipe's unless
    the group has its own). Empty groups are left out. Each dict holds ``params``, ``lr``, ``weight_decay``
    and ``name``.
    """
    rules = {g.name: g.no_decay or recipe.no_decay for g in recipe.groups} | {"rest": recipe.no_decay}
    exempt = {rule: _no_decay_names(model, rule) for rule in set(rules.values())}
    no_decay = {group: exempt[rule] for group, rule in rules.items()}
    frozen = {id(p) for p in frozen_parameters(model, recipe)}
    group_of: dict[int, str] = {}
    for g in reversed(recipe.groups):  # the first group that holds a parameter wins
        group_of.update((id(p), g.name) for p in g.parameters(model))
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    rates = {g.name: g.learning_rate for g in recipe.groups} | {"rest": recipe.learning_rate}
    order = [(g.name, decay) for g in recipe.groups for decay in (True, False)]
    order += [("rest", True), ("rest", False)]
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in frozen:
            continue
        group = group_of.get(id(param), "rest")
        buckets.setdefault((group, name not in no_decay[group]), []).append(param)
    groups = []
    for group, decay in order:
        params = buckets.get((group, decay))
        if params:
            groups.append(
                {
                    "params": params,
                    "lr": rates[group],
                    "weight_decay": recipe.weight_decay if decay else 0.0,
                    "name": group if decay else f"{group}/no_decay",
                }
            )
    return groups


def frozen_parameters(model: nn.Module, recipe: TrainingRecipe) -> list[nn.Parameter]:
    """The parameters of the recipe's ``frozen_modules`` (paths as in :func:`submodules`).

    Raises:
        ValueError: if ``model`` lacks one of the modules.
    """
    params = []
    for path in recipe.frozen_modules:
        try:
            modules = submodules(model, path)
        except ValueError as error:
            raise ValueError(f"recipe {recipe.name!r}, frozen modules: {error}") from None
        for module in modules:
            params.extend(module.parameters())
    return params


def build_optimizer(model: nn.Module, recipe: TrainingRecipe) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` or ``Adam`` over :func:`parameter_groups` with the recipe's hyper-parameters.

    The parameters of the recipe's ``frozen_modules`` are set to ``requires_grad=False`` first: they get no
    gradient, so gradient clipping and DDP leave them out as the optimizer does.
    """
    for param in frozen_parameters(model, recipe):
        param.requires_grad_(False)
    groups = parameter_groups(model, recipe)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    kwargs = dict(lr=recipe.learning_rate, betas=recipe.betas, eps=recipe.eps, amsgrad=recipe.amsgrad)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=recipe.weight_decay, **kwargs)
    return torch.optim.AdamW(groups, weight_decay=recipe.weight_decay, **kwargs)
