"""Semantic evaluator: the exact set of objects an expression tree refers to in a scene.

``evaluate`` returns a frozenset of object indices (empty = no target) or ``None`` when the expression
is undefined or ambiguous in that scene ("the circle" with two circles, "the two stars" with three,
geometry too close to a decision boundary). Generators only emit expressions whose value is not None,
so every emitted target set is exact.

Geometry uses each object's nominal centre and radius, normalised by the image side. Decisions need
clear margins:

* extremes ("leftmost", "on the left" among several): the winner beats the runner-up by
  ``POSITION_MARGIN`` of the image side; "largest"/"smallest" need a radius ratio of ``SIZE_RATIO``;
* "on the left" with a single candidate: its centre lies in the outer ``HALF_LIMIT`` of the image;
* relations ("above the blue star"): true when the offset along the direction is at least
  ``RELATION_MIN`` and at least the perpendicular offset (within 45 degrees); false when it is at most
  ``RELATION_FALSE`` or at most half the perpendicular offset; anything in between makes the
  expression undefined. An absent anchor, or no candidate in the relation, means no target.
"""

from __future__ import annotations

from .grammar import (
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
)
from .scene import Scene, SceneObject

POSITION_MARGIN = 0.08
SIZE_RATIO = 1.35
HALF_LIMIT = 0.4
RELATION_MIN = 0.08
RELATION_FALSE = 0.02

# (axis, sign): the extreme object minimises sign * coordinate.
_DIRECTIONS = {"left": ("x", 1), "right": ("x", -1), "top": ("y", 1), "bottom": ("y", -1)}
_SUPERLATIVE_DIRECTION = {"leftmost": "left", "rightmost": "right", "topmost": "top", "bottommost": "bottom"}


def _coord(obj: SceneObject, axis: str, size: int) -> float:
    return (obj.cx if axis == "x" else obj.cy) / size


def matching(desc: Description, scene: Scene) -> list[int]:
    """Indices of the scene's objects that ``desc`` describes."""
    return [i for i, o in enumerate(scene.objects) if desc.matches(o)]


def _extreme(cands: list[int], scene: Scene, direction: str) -> int | None:
    """The candidate furthest towards ``direction`` if it leads the runner-up by POSITION_MARGIN."""
    axis, sign = _DIRECTIONS[direction]
    keyed = sorted((sign * _coord(scene.objects[i], axis, scene.image_size), i) for i in cands)
    return keyed[0][1] if keyed[1][0] - keyed[0][0] >= POSITION_MARGIN else None


def _by_size(cands: list[int], scene: Scene, word: str) -> int | None:
    radii = sorted((scene.objects[i].radius, i) for i in cands)
    if word == "largest":
        (r2, _), (r1, best) = radii[-2], radii[-1]
        return best if r1 >= SIZE_RATIO * r2 else None
    (r1, best), (r2, _) = radii[0], radii[1]
    return best if r2 >= SIZE_RATIO * r1 else None


def relation_state(target: SceneObject, anchor: SceneObject, relation: str, size: int) -> bool | None:
    """True / False / None (too close to call) for "``target`` is ``relation`` ``anchor``"."""
    dx, dy = (target.cx - anchor.cx) / size, (target.cy - anchor.cy) / size
    offsets = {"above": (-dy, dx), "below": (dy, dx), "left_of": (-dx, dy), "right_of": (dx, dy)}
    along, across = offsets[relation][0], abs(offsets[relation][1])
    if along >= RELATION_MIN and along >= across:
        return True
    if along <= RELATION_FALSE or along <= 0.5 * across:
        return False
    return None


def _the(expr: The, scene: Scene) -> frozenset[int] | None:
    cands = matching(expr.desc, scene)
    mod = expr.modifier
    if isinstance(mod, Relation):
        anchor = _the(mod.anchor, scene)
        if anchor is None:
            return None
        if not anchor:
            return frozenset()
        (a,) = anchor
        states = {
            i: relation_state(scene.objects[i], scene.objects[a], mod.relation, scene.image_size)
            for i in cands
            if i != a
        }
        if any(s is None for s in states.values()):
            return None
        cands = [i for i, s in states.items() if s]
        return frozenset(cands) if len(cands) <= 1 else None
    if not cands:
        return frozenset()
    if mod is None:
        return frozenset(cands) if len(cands) == 1 else None
    if len(cands) == 1:
        if isinstance(mod, Superlative):
            return frozenset(cands)
        obj = scene.objects[cands[0]]
        x, y = obj.cx / scene.image_size, obj.cy / scene.image_size
        inside = {
            "left": x <= HALF_LIMIT,
            "right": x >= 1.0 - HALF_LIMIT,
            "top": y <= HALF_LIMIT,
            "bottom": y >= 1.0 - HALF_LIMIT,
        }[mod.direction]
        return frozenset(cands) if inside else None  # a lone candidate in the middle or opposite half
    if isinstance(mod, Location):
        best = _extreme(cands, scene, mod.direction)
    elif mod.word in _SUPERLATIVE_DIRECTION:
        best = _extreme(cands, scene, _SUPERLATIVE_DIRECTION[mod.word])
    else:
        best = _by_size(cands, scene, mod.word)
    return None if best is None else frozenset([best])


def evaluate(expr: Expression, scene: Scene) -> frozenset[int] | None:
    """Indices (into ``scene.objects``) of the referred objects; empty = no target; None = undefined."""
    if isinstance(expr, The):
        return _the(expr, scene)
    if isinstance(expr, All):
        return frozenset(matching(expr.desc, scene))
    if isinstance(expr, Everything):
        return frozenset(matching(Description(colour=expr.colour), scene))
    if isinstance(expr, Count):
        cands = matching(expr.desc, scene)
        if not cands:
            return frozenset()
        return frozenset(cands) if len(cands) == expr.number else None
    if isinstance(expr, Conj):
        values = [_the(p, scene) for p in expr.parts]
        if any(v is None or len(v) != 1 for v in values):
            return None  # a partly absent or ambiguous conjunction has no clear answer
        union = frozenset().union(*values)
        return union if len(union) == len(values) else None
    raise ValueError(f"not an expression tree: {type(expr).__name__}")
