"""Measurements of synthetic scenes that only the tests need."""

from __future__ import annotations

from refseg.data.synthetic.scene import Scene


def visible_fractions(scene: Scene) -> list[float]:
    """Each object's visible share of its full mask, in [0, 1]."""
    return [
        float(v.sum()) / max(float(m.sum()), 1.0)
        for v, m in zip(scene.visible_masks(), scene.full_masks(), strict=True)
    ]
