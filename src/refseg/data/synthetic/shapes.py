"""Anti-aliased coverage maps of the five synthetic shapes (circle, square, triangle, star, ring).

Each shape is drawn with PIL at ``supersample`` times the pixel resolution inside its own bounding
window and box-filtered down, giving a coverage in [0, 1] per pixel. The instance mask is
``coverage >= 0.5`` and the same coverage is the alpha used to paint the object, so pixels and masks
agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")

# Shape extents relative to the object's nominal radius r, chosen so the five shapes look about as
# big as each other: a square of half-side 0.886 r has the area of the circle of radius r.
_SQUARE_HALF_SIDE = 0.886
_TRIANGLE_CIRCUMRADIUS = 1.25
_STAR_OUTER, _STAR_INNER = 1.25, 0.5
_RING_OUTER, _RING_INNER = 1.05, 0.58
MAX_EXTENT = 1.25  # largest distance from the centre reached by any shape, in units of r


def shape_outline(shape: str, radius: float, angle: float = 0.0) -> list[tuple[float, float]]:
    """Polygon vertices (dx, dy) around the centre for the polygonal shapes (image y axis points down)."""
    if shape == "square":
        h = _SQUARE_HALF_SIDE * radius
        corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":
        rt = _TRIANGLE_CIRCUMRADIUS * radius
        corners = [(rt * math.sin(a), -rt * math.cos(a)) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    elif shape == "star":
        corners = []
        for k in range(10):
            rk = (_STAR_OUTER if k % 2 == 0 else _STAR_OUTER * _STAR_INNER) * radius
            a = k * math.pi / 5
            corners.append((rk * math.sin(a), -rk * math.cos(a)))
    else:
        raise ValueError(
            f"shape {shape!r} has no polygon outline; polygonal shapes are square, triangle, star"
        )
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(c * x - s * y, s * x + c * y) for x, y in corners]


def shape_window(cx: float, cy: float, radius: float, image_size: int) -> tuple[int, int, int, int]:
    """Pixel window ``(y0, y1, x0, x1)`` outside which a shape's coverage is zero."""
    reach = MAX_EXTENT * radius + 1.0
    x0, y0 = max(int(math.floor(cx - reach)), 0), max(int(math.floor(cy - reach)), 0)
    x1, y1 = min(int(math.ceil(cx + reach)), image_size), min(int(math.ceil(cy + reach)), image_size)
    return y0, y1, x0, x1


def shape_coverage(
    shape: str, cx: float, cy: float, radius: float, image_size: int, angle: float = 0.0, supersample: int = 4
) -> np.ndarray:
    """Fraction of each pixel of a square ``image_size`` canvas covered by the shape (float32, (S, S)).

    Pixel (i, j) covers the square [j, j + 1) x [i, i + 1) in image coordinates; ``(cx, cy)`` and
    ``radius`` are in pixels, ``angle`` in degrees (rotation of polygonal shapes).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    out = np.zeros((image_size, image_size), dtype=np.float32)
    y0, y1, x0, x1 = shape_window(cx, cy, radius, image_size)
    if x1 <= x0 or y1 <= y0:
        return out
    s = supersample
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(canvas)
    # PIL fills pixel k of the supersampled canvas when its centre k + 0.5 is inside the shape.
    ux, uy, ur = (cx - x0) * s - 0.5, (cy - y0) * s - 0.5, radius * s
    if shape in ("circle", "ring"):
        outer = ur * (_RING_OUTER if shape == "ring" else 1.0)
        draw.ellipse([ux - outer, uy - outer, ux + outer, uy + outer], fill=255)
        if shape == "ring":
            inner = ur * _RING_INNER
            draw.ellipse([ux - inner, uy - inner, ux + inner, uy + inner], fill=0)
    else:
        draw.polygon([(ux + dx, uy + dy) for dx, dy in shape_outline(shape, ur, angle)], fill=255)
    out[y0:y1, x0:x1] = np.asarray(canvas.reduce(s), dtype=np.float32) / 255.0  # box filter
    return out
