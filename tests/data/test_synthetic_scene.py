"""Shapes and random layouts of the synthetic scenes."""

import math

import numpy as np
import pytest

from refseg.data.synthetic import SHAPES, sample_scene, shape_coverage
from tests.data.scene_helpers import visible_fractions


def test_shape_areas_match_geometry():
    size, r = 128, 30.0
    circle = shape_coverage("circle", 64, 64, r, size)
    assert circle.sum() == pytest.approx(math.pi * r**2, rel=0.01)
    assert (circle >= 0.5).sum() == pytest.approx(math.pi * r**2, rel=0.02)
    ring = shape_coverage("ring", 64, 64, r, size)
    assert ring.sum() == pytest.approx(math.pi * r**2 * (1.05**2 - 0.58**2), rel=0.02)
    assert ring[64, 64] == 0  # the hole
    square = shape_coverage("square", 64, 64, r, size)
    assert square.sum() == pytest.approx((2 * 0.886 * r) ** 2, rel=0.01)
    triangle = shape_coverage("triangle", 64, 64, r, size)
    assert triangle.sum() == pytest.approx(3 * math.sqrt(3) / 4 * (1.25 * r) ** 2, rel=0.02)
    clipped = shape_coverage("circle", 0, 0, r, size)  # centred on the corner: a quarter remains
    assert clipped.sum() == pytest.approx(math.pi * r**2 / 4, rel=0.02)
    with pytest.raises(ValueError, match="unknown shape 'oval'"):
        shape_coverage("oval", 1, 1, 1, 8)


def test_sample_scene_layout():
    for seed in range(20):
        scene = sample_scene(np.random.default_rng(seed), image_size=128, num_objects=(3, 6), min_visible=0.6)
        assert 3 <= len(scene.objects) <= 6
        assert min(visible_fractions(scene)) >= 0.6
        assert all(o.shape in SHAPES for o in scene.objects)
        union = np.zeros((128, 128), dtype=int)
        for mask in scene.visible_masks():
            union += mask
        assert union.max() == 1  # visible masks never overlap
    a = sample_scene(np.random.default_rng(7), image_size=64)
    b = sample_scene(np.random.default_rng(7), image_size=64)
    assert a.objects == b.objects and (np.asarray(a.render()) == np.asarray(b.render())).all()
    with pytest.raises(ValueError, match="num_objects must be"):
        sample_scene(np.random.default_rng(0), num_objects=(4, 2))
