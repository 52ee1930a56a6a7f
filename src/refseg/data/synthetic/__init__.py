"""Synthetic referring scenes: coloured shapes, a referring-expression grammar with an exact semantic
evaluator, ``datasets`` builders in the common row schema, and a matching word-level tokenizer."""

from .dataset import CATEGORIES, scene_rows, synthetic_features, synthetic_scene_splits, synthetic_scenes
from .expressions import KINDS, Referring, sample_expression, sample_expressions
from .grammar import (
    All,
    Conj,
    Count,
    Description,
    Everything,
    Location,
    Relation,
    Superlative,
    The,
    realise,
    vocabulary,
)
from .scene import COLOURS, SIZES, Scene, SceneObject, sample_scene
from .semantics import evaluate
from .shapes import SHAPES, shape_coverage
from .tokenizer import synthetic_tokenizer

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "KINDS",
    "SHAPES",
    "SIZES",
    "All",
    "Conj",
    "Count",
    "Description",
    "Everything",
    "Location",
    "Referring",
    "Relation",
    "Scene",
    "SceneObject",
    "Superlative",
    "The",
    "evaluate",
    "realise",
    "sample_expression",
    "sample_expressions",
    "sample_scene",
    "scene_rows",
    "shape_coverage",
    "synthetic_features",
    "synthetic_scene_splits",
    "synthetic_scenes",
    "synthetic_tokenizer",
    "vocabulary",
]
