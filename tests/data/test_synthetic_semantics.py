"""The synthetic grammar's evaluator against hand-built scenes with hand-computed answers."""

import numpy as np
import pytest

from refseg.data.synthetic import (
    COLOURS,
    All,
    Conj,
    Count,
    Description,
    Everything,
    Location,
    Relation,
    Scene,
    SceneObject,
    Superlative,
    The,
    evaluate,
    realise,
)
from tests.data.scene_helpers import visible_fractions

D = Description


@pytest.fixture
def scene():
    # 200 x 200 canvas, positions in pixels; indices in comments are the expected answers below.
    return Scene(
        200,
        (
            SceneObject("circle", "red", "small", 30, 100, 10),  # 0: far left, middle height
            SceneObject("circle", "red", "large", 170, 100, 25),  # 1: far right
            SceneObject("square", "blue", "large", 100, 30, 25),  # 2: top centre
            SceneObject("star", "green", "small", 100, 170, 12),  # 3: bottom centre
            SceneObject("triangle", "yellow", "small", 60, 40, 10),  # 4: upper left
            SceneObject("triangle", "yellow", "large", 150, 170, 24),  # 5: lower right
        ),
    )


CASES = [
    # single targets: attributes, location, superlatives, relations
    (The(D("circle", "red", "small")), "the small red circle", {0}),
    (The(D("circle", "red", "small"), Location("left")), "the small red circle on the left", {0}),
    (The(D("circle"), Location("left")), "the circle on the left", {0}),
    (The(D("circle"), Location("right")), "the circle on the right", {1}),
    (The(D("square"), Location("top")), "the square at the top", {2}),  # single candidate, top half
    (The(D("circle"), Superlative("largest")), "the largest circle", {1}),
    (The(D("triangle"), Superlative("smallest")), "the smallest triangle", {4}),
    (The(D("triangle"), Superlative("topmost")), "the topmost triangle", {4}),
    (The(D(colour="yellow"), Superlative("rightmost")), "the rightmost yellow shape", {5}),
    (The(D("square"), Relation("above", The(D("star", "green")))), "the square above the green star", {2}),
    (The(D("star"), Relation("below", The(D("square")))), "the star below the square", {3}),
    (The(D("triangle"), Relation("right_of", The(D("star")))), "the triangle to the right of the star", {5}),
    (
        The(D(colour="red"), Relation("left_of", The(D("square")))),
        "the red shape to the left of the square",
        {0},
    ),
    (The(D("ring"), Superlative("leftmost")), "the leftmost ring", set()),
    # several targets
    (All(D("circle")), "all circles", {0, 1}),
    (All(D(colour="red")), "all red shapes", {0, 1}),
    (Everything("yellow"), "everything yellow", {4, 5}),
    (Count(2, D("triangle")), "the two triangles", {4, 5}),
    (Count(2, D(size="large")), "the two large shapes", None),  # three large shapes
    (
        Conj((The(D("circle", "red", "small")), The(D("square")))),
        "the small red circle and the square",
        {0, 2},
    ),
    (
        Conj((The(D("star")), The(D("square")), The(D("circle", size="large")))),
        "the star, the square and the large circle",
        {1, 2, 3},
    ),
    # no target
    (The(D("star", "purple")), "the purple star", set()),
    (The(D("star", "purple"), Location("left")), "the purple star on the left", set()),
    (All(D("ring")), "all rings", set()),
    (Everything("orange"), "everything orange", set()),
    (Count(2, D("ring")), "the two rings", set()),
    (The(D("square"), Relation("above", The(D("ring", "blue")))), "the square above the blue ring", set()),
    (The(D("ring"), Relation("above", The(D("star")))), "the ring above the star", set()),
    # undefined: several candidates or partial conjunctions are never emitted
    (The(D("circle")), "the circle", None),
    (The(D("triangle"), Relation("below", The(D("circle")))), "the triangle below the circle", None),
    (Count(3, D("triangle")), "the three triangles", None),
    (Conj((The(D("square")), The(D("ring")))), "the square and the ring", None),
    (Conj((The(D("square")), The(D("circle")))), "the square and the circle", None),
    (The(D("square"), Location("bottom")), "the square at the bottom", None),  # its only square is at the top
]


@pytest.mark.parametrize(("expr", "sentence", "expected"), CASES, ids=[c[1] for c in CASES])
def test_hand_built_scene(scene, expr, sentence, expected):
    assert realise(expr) == sentence
    value = evaluate(expr, scene)
    assert (None if value is None else set(value)) == expected


def test_relation_margins():
    # anchor star at the centre; a ring straight above it, a circle 45-60 degrees off the vertical
    def scene_with(x, y):
        return Scene(
            200,
            (
                SceneObject("star", "green", "small", 100, 100, 10),
                SceneObject("ring", "red", "small", x, y, 10),
            ),
        )

    above = The(D("ring"), Relation("above", The(D("star"))))
    assert evaluate(above, scene_with(100, 40)) == {1}  # straight above, 0.3 of the side
    assert evaluate(above, scene_with(100, 90)) is None  # only 0.05 above: too close to call
    assert evaluate(above, scene_with(100, 97)) == set()  # 0.015 above counts as not above
    assert evaluate(above, scene_with(150, 40)) == {1}  # 40 degrees off the vertical: above
    assert evaluate(above, scene_with(170, 40)) is None  # about 49 degrees off: ambiguous
    assert evaluate(above, scene_with(190, 70)) == set()  # 72 degrees off: sideways, not above


def test_extreme_needs_margin():
    close = Scene(
        200,
        (
            SceneObject("circle", "red", "small", 50, 50, 10),
            SceneObject("circle", "blue", "small", 60, 150, 10),
        ),
    )
    assert evaluate(The(D("circle"), Superlative("leftmost")), close) is None  # 0.05 apart < 0.08
    assert evaluate(The(D("circle"), Superlative("topmost")), close) == {0}
    assert evaluate(The(D("circle"), Superlative("largest")), close) is None  # same radius


def test_occlusion_visible_masks_do_not_overlap():
    s = Scene(
        64,
        (
            SceneObject("square", "red", "large", 30, 30, 12),
            SceneObject("circle", "blue", "large", 38, 30, 10),
        ),
    )
    back, front = s.visible_masks()
    full_back, full_front = s.full_masks()
    assert not (back & front).any()
    assert (front == full_front).all()  # the front object is whole
    assert (back == (full_back & ~full_front)).all()
    assert 0 < visible_fractions(s)[0] < 1 and visible_fractions(s)[1] == 1.0
    # the painted pixels agree with the masks: fully covered pixels have the paint colour exactly,
    # anti-aliased edges mix it with what lies behind
    pixels = np.asarray(s.render()).astype(int)
    cov_back, cov_front = s.coverages()
    assert (pixels[cov_front == 1] == COLOURS["blue"]).all()
    assert (pixels[(cov_back == 1) & (cov_front == 0)] == COLOURS["red"]).all()
    assert (pixels[(cov_back == 0) & (cov_front == 0)] == 128).all()  # plain background
    assert pixels[back][:, 0].mean() > 150 > pixels[back][:, 2].mean()


def test_bad_attributes_raise():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        D("hexagon")
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        SceneObject("circle", "pink", "small", 1, 1, 1)
    with pytest.raises(ValueError, match="anchor of a relation must be a plain description"):
        Relation("above", The(D("star"), Location("left")))
    with pytest.raises(ValueError, match="unsupported number 4"):
        Count(4, D("star"))
