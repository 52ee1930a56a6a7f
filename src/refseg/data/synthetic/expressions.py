"""Sampling referring expressions of a given kind (single / multi / no-target) for a scene.

A sampler proposes an expression tree from the scene's objects, the evaluator (``semantics.evaluate``)
resolves it, and the proposal is kept only when its value is defined and has the requested number of
targets; so the target set attached to every sentence is the evaluator's, never the proposal's guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grammar import (
    LOCATIONS,
    RELATIONS,
    SUPERLATIVES,
    All,
    Conj,
    Count,
    Description,
    Everything,
    Expression,
    Location,
    Relation,
    Superlative,
    The,
    realise,
)
from .scene import COLOURS, SIZES, Scene
from .semantics import evaluate, matching, relation_state
from .shapes import SHAPES

KINDS: tuple[str, ...] = ("single", "multi", "no_target")
DEFAULT_KIND_WEIGHTS: dict[str, float] = {"single": 0.5, "multi": 0.3, "no_target": 0.2}

_SINGLE_TEMPLATES = {"plain": 0.35, "location": 0.2, "superlative": 0.2, "relation": 0.25}
_MULTI_TEMPLATES = {"all": 0.3, "everything": 0.15, "count": 0.2, "conj": 0.35}
_NO_TARGET_TEMPLATES = {
    "plain": 0.35,
    "location": 0.1,
    "superlative": 0.1,
    "all": 0.15,
    "everything": 0.1,
    "relation": 0.2,
}


@dataclass(frozen=True)
class Referring:
    """A sampled expression: tree, sentence and the evaluator's target set (indices into the scene)."""

    expression: Expression
    sentence: str
    targets: frozenset[int]

    @property
    def kind(self) -> str:
        return kind_of(self.targets)


def kind_of(targets: frozenset[int]) -> str:
    """``"no_target"``, ``"single"`` or ``"multi"`` for a set of referred object indices."""
    return "no_target" if not targets else "single" if len(targets) == 1 else "multi"


def _pick(rng: np.random.Generator, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _describe(
    scene: Scene, i: int, rng: np.random.Generator, p_shape=0.85, p_colour=0.6, p_size=0.35
) -> Description:
    """A random subset of object ``i``'s attributes (never empty)."""
    o = scene.objects[i]
    while True:
        d = Description(
            o.shape if rng.random() < p_shape else None,
            o.colour if rng.random() < p_colour else None,
            o.size if rng.random() < p_size else None,
        )
        if d != Description():
            return d


def _unique_description(scene: Scene, i: int, rng: np.random.Generator, tries: int = 8) -> Description | None:
    for _ in range(tries):
        d = _describe(scene, i, rng)
        if matching(d, scene) == [i]:
            return d
    o = scene.objects[i]
    full = Description(o.shape, o.colour, o.size)
    return full if matching(full, scene) == [i] else None


def _absent_description(scene: Scene, rng: np.random.Generator) -> Description | None:
    """A description matching nothing; usually a near miss (one attribute of a real object changed)."""
    for _ in range(10):
        if rng.random() < 0.75:
            d = _describe(
                scene, int(rng.integers(len(scene.objects))), rng, p_shape=0.9, p_colour=0.8, p_size=0.3
            )
            attr = _pick(rng, [a for a in ("shape", "colour", "size") if getattr(d, a) is not None])
            values = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES}[attr]
            d = Description(**{**d.__dict__, attr: _pick(rng, [v for v in values if v != getattr(d, attr)])})
        else:
            d = Description(_pick(rng, SHAPES), _pick(rng, COLOURS) if rng.random() < 0.7 else None)
        if not matching(d, scene):
            return d
    return None


def _propose_single(scene: Scene, template: str, rng: np.random.Generator) -> Expression | None:
    t = int(rng.integers(len(scene.objects)))
    desc = _describe(scene, t, rng)
    if template == "plain":
        return The(desc)
    if template == "location":
        return The(desc, Location(_pick(rng, LOCATIONS)))
    if template == "superlative":
        word = _pick(rng, SUPERLATIVES)
        if word in ("largest", "smallest"):
            desc = Description(desc.shape, desc.colour)
        if len(matching(desc, scene)) < 2:
            return None  # a superlative over one candidate says nothing
        return The(desc, Superlative(word))
    others = [a for a in range(len(scene.objects)) if a != t]
    a = _pick(rng, others) if others else None
    if a is None:
        return None
    anchor = _unique_description(scene, a, rng)
    true_relations = [
        r for r in RELATIONS if relation_state(scene.objects[t], scene.objects[a], r, scene.image_size)
    ]
    if anchor is None or not true_relations:
        return None
    return The(desc, Relation(_pick(rng, true_relations), The(anchor)))


def _propose_multi(scene: Scene, template: str, rng: np.random.Generator) -> Expression | None:
    i = int(rng.integers(len(scene.objects)))
    if template == "everything":
        return Everything(scene.objects[i].colour)
    desc = _describe(scene, i, rng, p_shape=0.7, p_colour=0.5, p_size=0.25)
    if template == "all":
        return All(desc)
    if template == "count":
        n = len(matching(desc, scene))
        return Count(n, desc) if n in (2, 3) else None
    n = 3 if len(scene.objects) >= 3 and rng.random() < 0.2 else 2
    chosen = rng.choice(len(scene.objects), size=min(n, len(scene.objects)), replace=False)
    parts = []
    for j in sorted(int(c) for c in chosen):
        d = _unique_description(scene, j, rng)
        if d is None:
            return None
        parts.append(The(d))
    return Conj(tuple(parts)) if len(parts) >= 2 else None


def _propose_no_target(scene: Scene, template: str, rng: np.random.Generator) -> Expression | None:
    if template == "everything":
        present = {o.colour for o in scene.objects}
        absent = [c for c in COLOURS if c not in present]
        return Everything(_pick(rng, absent)) if absent else None
    desc = _absent_description(scene, rng)
    if desc is None:
        return None
    if template == "plain":
        return The(desc)
    if template == "location":
        return The(desc, Location(_pick(rng, LOCATIONS)))
    if template == "superlative":
        word = _pick(rng, SUPERLATIVES)
        return The(
            Description(desc.shape, desc.colour) if word in ("largest", "smallest") else desc,
            Superlative(word),
        )
    if template == "all":
        return All(desc)
    # relation: either the head or the anchor is absent
    a = int(rng.integers(len(scene.objects)))
    present = _unique_description(scene, a, rng)
    if present is None:
        return None
    relation = Relation(_pick(rng, RELATIONS), The(present))
    if rng.random() < 0.5:
        return The(desc, relation)
    return The(_describe(scene, a, rng), Relation(relation.relation, The(desc)))


_PROPOSERS = {
    "single": (_propose_single, _SINGLE_TEMPLATES),
    "multi": (_propose_multi, _MULTI_TEMPLATES),
    "no_target": (_propose_no_target, _NO_TARGET_TEMPLATES),
}


def sample_expression(
    scene: Scene,
    kind: str,
    rng: np.random.Generator,
    exclude: set[str] | frozenset[str] = frozenset(),
    max_tries: int = 60,
) -> Referring | None:
    """An expression of ``kind`` whose evaluated target count fits it, not in ``exclude``; None if none found."""
    if kind not in KINDS:
        raise ValueError(f"unknown expression kind {kind!r}; expected one of {KINDS}")
    if not scene.objects:
        raise ValueError("cannot refer to objects in an empty scene")
    propose, templates = _PROPOSERS[kind]
    for _ in range(max_tries):
        expr = propose(scene, _weighted(rng, templates), rng)
        if expr is None:
            continue
        targets = evaluate(expr, scene)
        if targets is None or kind_of(targets) != kind:
            continue
        sentence = realise(expr)
        if sentence not in exclude:
            return Referring(expr, sentence, targets)
    return None


def check_kind_weights(kind_weights: dict[str, float] | None) -> dict[str, float]:
    """The default weights for None; otherwise validated non-negative weights over ``KINDS``."""
    weights = dict(DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights)
    unknown = set(weights) - set(KINDS)
    if unknown or not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"kind_weights must map some of {KINDS} to non-negative weights, got {kind_weights}")
    return weights


def sample_expressions(
    scene: Scene,
    count: int,
    rng: np.random.Generator,
    kind_weights: dict[str, float] | None = None,
) -> list[Referring]:
    """``count`` distinct expressions, kinds drawn from ``kind_weights``; falls back to other kinds if needed."""
    weights = check_kind_weights(kind_weights)
    out: list[Referring] = []
    seen: set[str] = set()
    for _ in range(count):
        kind = _weighted(rng, weights)
        order = [kind] + [k for k in KINDS if k != kind and weights.get(k, 0) > 0]
        for k in order:
            ref = sample_expression(scene, k, rng, exclude=seen)
            if ref is not None:
                out.append(ref)
                seen.add(ref.sentence)
                break
    return out
