"""The referring-expression grammar of the synthetic scenes: expression trees, their English, the vocabulary.

Expression trees (meaning in ``semantics.evaluate``)::

    The(desc)                      "the small red circle"
    The(desc, Location(d))         "the red circle on the left" / "at the top"
    The(desc, Superlative(s))      "the largest triangle", "the leftmost ring"
    The(desc, Relation(r, The))    "the square above the blue star", "the ring to the left of the star"
    All(desc)                      "all circles", "all red shapes"
    Everything(colour)             "everything blue"
    Count(n, desc)                 "the two triangles"
    Conj((The, The[, The]))        "the red circle and the green square"

One phrasing per meaning keeps the language small enough for a tiny model to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scene import COLOURS, SIZES, SceneObject
from .shapes import SHAPES

LOCATIONS: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
SUPERLATIVES: tuple[str, ...] = ("largest", "smallest", "leftmost", "rightmost", "topmost", "bottommost")
RELATIONS: dict[str, str] = {
    "above": "above",
    "below": "below",
    "left_of": "to the left of",
    "right_of": "to the right of",
}
NUMBERS: dict[int, str] = {2: "two", 3: "three"}
GENERIC_NOUN = "shape"


@dataclass(frozen=True)
class Description:
    """Attributes of a noun phrase; ``shape=None`` is the generic noun "shape"."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None

    def __post_init__(self):
        if self.shape is not None and self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES} or None")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {tuple(COLOURS)} or None")
        if self.size is not None and self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {SIZES} or None")

    def matches(self, obj: SceneObject) -> bool:
        """Whether ``obj`` has every attribute this description names."""
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )

    def words(self, plural: bool = False) -> str:
        """The noun phrase, e.g. ``"small red circles"`` (``plural`` adds the plural ``s``)."""
        noun = self.shape or GENERIC_NOUN
        return " ".join(w for w in (self.size, self.colour, noun + ("s" if plural else "")) if w)


@dataclass(frozen=True)
class Location:
    direction: str  # key of LOCATIONS

    def __post_init__(self):
        if self.direction not in LOCATIONS:
            raise ValueError(f"unknown location {self.direction!r}; expected one of {tuple(LOCATIONS)}")


@dataclass(frozen=True)
class Superlative:
    word: str  # one of SUPERLATIVES

    def __post_init__(self):
        if self.word not in SUPERLATIVES:
            raise ValueError(f"unknown superlative {self.word!r}; expected one of {SUPERLATIVES}")


@dataclass(frozen=True)
class Relation:
    relation: str  # key of RELATIONS
    anchor: The

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {tuple(RELATIONS)}")
        if self.anchor.modifier is not None:
            raise ValueError("the anchor of a relation must be a plain description ('the blue star')")


@dataclass(frozen=True)
class The:
    """A definite singular reference, optionally narrowed by a location, superlative or relation."""

    desc: Description
    modifier: Location | Superlative | Relation | None = None


@dataclass(frozen=True)
class All:
    desc: Description


@dataclass(frozen=True)
class Everything:
    colour: str

    def __post_init__(self):
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {tuple(COLOURS)}")


@dataclass(frozen=True)
class Count:
    number: int
    desc: Description

    def __post_init__(self):
        if self.number not in NUMBERS:
            raise ValueError(f"unsupported number {self.number}; expected one of {tuple(NUMBERS)}")


@dataclass(frozen=True)
class Conj:
    parts: tuple[The, ...]

    def __post_init__(self):
        if not 2 <= len(self.parts) <= 3:
            raise ValueError(f"a conjunction joins 2 or 3 references, got {len(self.parts)}")


Expression = The | All | Everything | Count | Conj


def realise(expr: Expression) -> str:
    """The English sentence of an expression tree."""
    if isinstance(expr, The):
        mod = expr.modifier
        if isinstance(mod, Superlative):
            return f"the {mod.word} {expr.desc.words()}"
        head = f"the {expr.desc.words()}"
        if mod is None:
            return head
        if isinstance(mod, Location):
            return f"{head} {LOCATIONS[mod.direction]}"
        return f"{head} {RELATIONS[mod.relation]} {realise(mod.anchor)}"
    if isinstance(expr, All):
        return f"all {expr.desc.words(plural=True)}"
    if isinstance(expr, Everything):
        return f"everything {expr.colour}"
    if isinstance(expr, Count):
        return f"the {NUMBERS[expr.number]} {expr.desc.words(plural=True)}"
    if isinstance(expr, Conj):
        texts = [realise(p) for p in expr.parts]
        return ", ".join(texts[:-1]) + " and " + texts[-1]
    raise ValueError(f"not an expression tree: {type(expr).__name__}")


def vocabulary() -> list[str]:
    """Every word (and punctuation mark) a realised expression can contain, sorted."""
    words = {"the", "all", "everything", "and", ",", ".", GENERIC_NOUN, GENERIC_NOUN + "s"}
    words.update(SHAPES, (s + "s" for s in SHAPES), COLOURS, SIZES, SUPERLATIVES, NUMBERS.values())
    for phrase in (*LOCATIONS.values(), *RELATIONS.values()):
        words.update(phrase.split())
    return sorted(words)
