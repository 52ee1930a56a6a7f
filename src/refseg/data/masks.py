"""Mask helpers shared by every dataset builder: COCO RLE encode/decode, polygons, boxes.

Masks are stored in datasets as COCO RLE ``{"size": [h, w], "counts": str}`` and decoded only when a
sample is transformed (``docs/data.md``, "Row schema"). Every RLE is checked before it is decoded: the run
lengths (from a ``counts`` list, or decoded here from the compressed string) must be non-negative and sum
to ``h * w``. pycocotools does not check this and fills the rest of the mask with uninitialised memory.
An RLE's claimed ``size`` costs nothing to write (9 characters can claim 60000 x 60000 pixels), so it is
compared with the image's size before any pixel is allocated (``decode_rle(rle, size=...)``); without an
image size, decoding refuses masks above ``MAX_MASK_PIXELS``.
Polygon coordinates must be finite; polygons reaching far outside the image are clipped before
rasterisation (pycocotools overflows on huge coordinates). pycocotools is imported only by the encoders, so
decoding a mask does not load it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from .validate import RefsegDataError, as_int, short

MAX_MASK_PIXELS = 178_956_970
"""Largest mask ``decode_rle`` allocates when no image size is given (Pillow's decompression-bomb limit for
images, twice its warning level): about 171 MiB of booleans."""


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a boolean (H, W) mask as COCO RLE with a ``str`` counts field."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects a 2-D (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_size(rle, where: str = "mask") -> tuple[int, int]:
    """``(h, w)`` of a COCO RLE dict, checked to be two non-negative integers."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise RefsegDataError(f"{where}: expected a COCO RLE dict with 'size' and 'counts', got {short(rle)}")
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise RefsegDataError(f"{where}: RLE 'size' must be [height, width], got {short(size)}")
    h, w = (as_int(v, "size", where) for v in size)
    if h < 0 or w < 0:
        raise RefsegDataError(f"{where}: RLE 'size' must not be negative, got {[h, w]}")
    return h, w


def check_rle_size(rle, size: tuple[int, int], where: str = "mask") -> None:
    """``RefsegDataError`` unless the RLE claims exactly ``size`` = ``(height, width)`` (nothing is decoded)."""
    claimed = list(rle_size(rle, where))
    expected = [int(v) for v in size]
    if claimed != expected:
        raise RefsegDataError(f"{where}: RLE size {claimed} does not match the image size {expected}")


def _string_runs(counts: bytes, where: str) -> np.ndarray:
    """Run lengths of a COCO compressed RLE string (the LEB128-like format of pycocotools ``rleFrString``)."""
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ((c < 0) | (c > 63)).any():
        raise RefsegDataError(f"{where}: RLE counts string has characters outside the COCO alphabet")
    more = (c & 0x20) != 0
    if more[-1]:
        raise RefsegDataError(f"{where}: RLE counts string is truncated")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:
        raise RefsegDataError(f"{where}: RLE counts string holds a run length too large for any image")
    pos = np.arange(c.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])  # sign extension
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])  # runs[i] = x[i] + runs[i - 2] for i > 2
    runs[2::2] = np.cumsum(x[2::2])
    return runs


def rle_runs(rle, where: str = "mask") -> tuple[int, int, np.ndarray]:
    """``(h, w, runs)`` of a COCO RLE (compressed ``str``/``bytes`` or uncompressed list counts), with the
    run lengths checked: non-negative and summing to ``h * w``; ``RefsegDataError`` naming ``where`` otherwise."""
    h, w = rle_size(rle, where)
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise RefsegDataError(f"{where}: RLE counts string is not ASCII") from None
    if isinstance(counts, bytes):
        runs = _string_runs(counts, where)
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in counts):
            raise RefsegDataError(f"{where}: RLE counts list must hold integers, got {short(counts)}")
        if any(v < 0 for v in counts):
            raise RefsegDataError(f"{where}: RLE counts must not be negative")
        total = sum(int(v) for v in counts)
        if total != h * w:
            raise RefsegDataError(f"{where}: RLE counts sum to {total}, not height*width = {h * w}")
        return h, w, np.array([int(v) for v in counts], dtype=np.int64)
    else:
        raise RefsegDataError(
            f"{where}: RLE counts must be a list, str or bytes, got {type(counts).__name__}"
        )
    if (runs < 0).any():
        raise RefsegDataError(f"{where}: RLE counts must not be negative")
    total = int(runs.sum())
    if total != h * w:
        raise RefsegDataError(f"{where}: RLE counts sum to {total}, not height*width = {h * w}")
    return h, w, runs


def canonical_rle(rle, where: str = "mask") -> dict:
    """A checked RLE (``rle_runs``) re-encoded as compressed RLE with ``str`` counts."""
    from pycocotools import mask as mask_utils

    h, w, runs = rle_runs(rle, where)
    out = mask_utils.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    return {"size": [h, w], "counts": out["counts"].decode("ascii")}


def rle_area(rle) -> int:
    """Foreground pixels of a checked RLE."""
    return int(rle_runs(rle)[2][1::2].sum())


def decode_rle(rle: dict, size: tuple[int, int] | None = None, where: str = "mask") -> np.ndarray:
    """Decode COCO RLE (compressed string/bytes or uncompressed list counts) to a bool (H, W) array.

    ``size``: the ``(height, width)`` of the image the mask belongs to; the RLE's claimed size must equal it,
    checked before anything is decoded. Without it, masks over ``MAX_MASK_PIXELS`` are refused. The run
    lengths are checked next (``rle_runs``): garbage, truncated or empty strings and counts that do not sum
    to ``height * width`` raise ``RefsegDataError`` instead of decoding to uninitialised memory.
    """
    if size is not None:
        check_rle_size(rle, size, where)
    else:
        h, w = rle_size(rle, where)
        if h * w > MAX_MASK_PIXELS:
            raise RefsegDataError(
                f"{where}: RLE size {[h, w]} is over {MAX_MASK_PIXELS} pixels; pass the image size to "
                "decode_rle(rle, size=(height, width))"
            )
    h, w, runs = rle_runs(rle, where)
    values = np.arange(runs.size) % 2 == 1
    return np.ascontiguousarray(np.repeat(values, runs).reshape(w, h).T)


def polygon_is_valid(polygon: Sequence[float]) -> bool:
    """At least 3 points (even length >= 6, the official loaders' rule) and only finite coordinates."""
    return len(polygon) % 2 == 0 and len(polygon) >= 6 and all(math.isfinite(v) for v in polygon)


def check_polygons(polygons, where: str) -> list[list[float]]:
    """``polygons`` as lists of floats; ``RefsegDataError`` unless it is a list of lists of real numbers."""
    if not isinstance(polygons, (list, tuple)):
        raise RefsegDataError(f"{where}: malformed polygon segmentation {short(polygons)}")
    out = []
    for poly in polygons:
        if not isinstance(poly, (list, tuple)) or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in poly
        ):
            raise RefsegDataError(f"{where}: malformed polygon segmentation {short(poly)}")
        out.append([float(v) for v in poly])
    return out


def _clip_polygon(points: list[tuple[float, float]], box: tuple[float, float, float, float]) -> list:
    """Sutherland-Hodgman clipping of a polygon to an axis-aligned box (exact inside the box)."""
    x0, y0, x1, y1 = box
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        side = 1.0 if keep_above else -1.0
        out = []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            cur_in, prev_in = (cur[axis] - bound) * side >= 0, (prev[axis] - bound) * side >= 0
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                other = prev[1 - axis] + t * (cur[1 - axis] - prev[1 - axis])
                out.append((bound, other) if axis == 0 else (other, bound))
            if cur_in:
                out.append(cur)
        points = out
        if not points:
            break
    return points


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """Rasterise COCO polygons (merged into one mask) to compressed RLE with ``str`` counts.

    Each polygon needs at least 3 points and finite coordinates (``RefsegDataError`` otherwise). Parts far
    outside the image are clipped away first (to a box three times the image size around it, which keeps
    the part inside the image); a polygon lying wholly outside contributes nothing.
    """
    polygons = check_polygons(polygons, "polygons")
    box = (-float(width), -float(height), 2.0 * width, 2.0 * height)
    kept = []
    for poly in polygons:
        if not polygon_is_valid(poly):
            raise RefsegDataError(
                f"polygons: a polygon needs at least 3 points with finite coordinates, got {short(poly)}"
            )
        xs, ys = poly[0::2], poly[1::2]
        if min(xs) < box[0] or min(ys) < box[1] or max(xs) > box[2] or max(ys) > box[3]:
            points = _clip_polygon(list(zip(xs, ys)), box)
            poly = [v for p in points for v in p]
            if len(poly) < 6 or not all(math.isfinite(v) for v in poly):
                continue
        kept.append(poly)
    if not kept:
        return encode_mask(np.zeros((height, width), dtype=bool))
    from pycocotools import mask as mask_utils

    rle = mask_utils.merge(mask_utils.frPyObjects(kept, height, width))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """COCO box ``[x, y, w, h]`` (pixels) of the mask's foreground; ``[0, 0, 0, 0]`` when empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) + 1.0 - x0, float(ys.max()) + 1.0 - y0]


def merge_instances(instances: Sequence[dict], height: int, width: int) -> np.ndarray:
    """Union of the instance masks of one row (the GRES target); all-zero for no-target rows."""
    out = np.zeros((height, width), dtype=bool)
    for i, inst in enumerate(instances):
        rle = inst["segmentation"]
        claimed = list(rle_size(rle, f"instance #{i}"))
        if claimed != [height, width]:  # before decoding: the claimed size allocates nothing
            raise RefsegDataError(
                f"instance #{i}: mask size {claimed} does not match the image size {[height, width]}"
            )
        out |= decode_rle(rle, (height, width), f"instance #{i}")
    return out
