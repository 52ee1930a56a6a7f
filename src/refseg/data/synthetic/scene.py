"""Synthetic referring scenes: a few coloured shapes on a lightly textured background.

Objects are painted back to front; an object's instance mask is its *visible* part (its own mask minus
the masks of the objects in front of it), so visible masks never overlap. The random layout rejects a
placement that would hide too much of an object already placed, which is how mostly hidden objects are
kept out of the scenes (a fragment that no expression can describe never appears).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .shapes import MAX_EXTENT, SHAPES, shape_coverage, shape_window

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 215, 40),
    "purple": (145, 60, 195),
    "orange": (250, 135, 30),
}
SIZES: tuple[str, ...] = ("small", "large")
# Nominal radius as a fraction of the image side. The two ranges are far apart (ratio >= 1.69), so "small"
# and "large" are never ambiguous, and within one class the ratio stays below the superlative margin.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.05, 0.065), "large": (0.11, 0.145)}


@dataclass(frozen=True)
class SceneObject:
    """One shape: attributes used by the grammar and geometry in pixels (centre, nominal radius)."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float = 0.0
    rgb: tuple[int, int, int] | None = None  # painted colour (jittered palette colour); None = palette

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {tuple(COLOURS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {SIZES}")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {self.radius}")

    @property
    def paint(self) -> tuple[int, int, int]:
        return self.rgb if self.rgb is not None else COLOURS[self.colour]


@dataclass
class Scene:
    """Objects listed back to front on a square ``image_size`` canvas."""

    image_size: int
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int] = (128, 128, 128)
    texture_seed: int | None = None  # None: plain background
    texture_strength: float = 10.0
    _coverages: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size}")
        self.objects = tuple(self.objects)

    def coverages(self) -> list[np.ndarray]:
        """Anti-aliased coverage of every object as if nothing occluded it, (S, S) float32 each."""
        if self._coverages is None:
            self._coverages = [
                shape_coverage(o.shape, o.cx, o.cy, o.radius, self.image_size, o.angle) for o in self.objects
            ]
        return self._coverages

    def full_masks(self) -> list[np.ndarray]:
        """Each object's mask before occlusion (its coverage >= 0.5)."""
        return [c >= 0.5 for c in self.coverages()]

    def visible_masks(self) -> list[np.ndarray]:
        """Instance masks after occlusion: each object's mask minus those of all objects in front."""
        occluded = np.zeros((self.image_size, self.image_size), dtype=bool)
        visible = []
        for mask in reversed(self.full_masks()):
            visible.append(mask & ~occluded)
            occluded |= mask
        return visible[::-1]

    def render(self) -> Image.Image:
        """The RGB picture: background (+ smooth texture), objects alpha-composited back to front."""
        size = self.image_size
        canvas = np.empty((size, size, 3), dtype=np.float32)
        canvas[:] = np.asarray(self.background, dtype=np.float32)
        if self.texture_seed is not None and self.texture_strength > 0:
            rng = np.random.default_rng(self.texture_seed)
            coarse = rng.uniform(-1.0, 1.0, size=(6, 6)).astype(np.float32)
            smooth = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
            canvas += self.texture_strength * np.asarray(smooth, dtype=np.float32)[..., None]
        for obj, cov in zip(self.objects, self.coverages(), strict=True):
            y0, y1, x0, x1 = shape_window(obj.cx, obj.cy, obj.radius, size)
            alpha = cov[y0:y1, x0:x1, None]
            window = canvas[y0:y1, x0:x1]
            window += (np.asarray(obj.paint, dtype=np.float32) - window) * alpha
        return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def sample_scene(
    rng: np.random.Generator,
    image_size: int = 256,
    num_objects: tuple[int, int] = (3, 6),
    min_visible: float = 0.6,
    max_rotation: float = 15.0,
    repeat_prob: float = 0.35,
    texture: bool = True,
    max_tries: int = 40,
) -> Scene:
    """Random layout: ``num_objects`` (inclusive range) shapes, each keeping >= ``min_visible`` of its area.

    With probability ``repeat_prob`` a new object copies the shape or the colour of one already placed,
    so plural expressions ("the two triangles", "everything blue") have something to refer to.
    """
    lo, hi = num_objects
    if not 1 <= lo <= hi:
        raise ValueError(f"num_objects must be (min, max) with 1 <= min <= max, got {num_objects}")
    if not 0.0 <= min_visible <= 1.0:
        raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    target = int(rng.integers(lo, hi + 1))
    objects: list[SceneObject] = []
    coverages: list[np.ndarray] = []
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    for _ in range(target * max_tries):
        if len(objects) == target:
            break
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = tuple(COLOURS)[int(rng.integers(len(COLOURS)))]
        if objects and rng.random() < repeat_prob:
            model = objects[int(rng.integers(len(objects)))]
            if rng.random() < 0.5:
                shape = model.shape
            else:
                colour = model.colour
        size = SIZES[int(rng.integers(len(SIZES)))]
        radius = float(rng.uniform(*SIZE_RANGES[size])) * image_size
        reach = MAX_EXTENT * radius + 1.0
        cx, cy = (float(v) for v in rng.uniform(reach, image_size - reach, size=2))
        angle = (
            float(rng.uniform(-max_rotation, max_rotation))
            if shape in ("square", "triangle", "star")
            else 0.0
        )
        obj = SceneObject(shape, colour, size, cx, cy, radius, angle, _jitter(COLOURS[colour], rng))
        cov = shape_coverage(shape, cx, cy, radius, image_size, angle)
        mask = cov >= 0.5
        if not mask.any():
            continue
        kept = [v & ~mask for v in visible]
        if any(k.sum() < min_visible * f.sum() for k, f in zip(kept, full, strict=True)):
            continue
        objects.append(obj)
        coverages.append(cov)
        full.append(mask)
        visible = [*kept, mask]
    if len(objects) < lo:
        raise ValueError(
            f"could not place {lo} objects with min_visible={min_visible} on a {image_size}px canvas; "
            "lower num_objects or min_visible"
        )
    level = int(rng.integers(70, 186))
    background = tuple(int(np.clip(level + rng.integers(-10, 11), 0, 255)) for _ in range(3))
    texture_seed = int(rng.integers(2**31)) if texture else None
    return Scene(image_size, tuple(objects), background, texture_seed, _coverages=coverages)
