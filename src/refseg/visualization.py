"""Pictures of referring-segmentation results (PIL + numpy only).

The picture tells the same story as the numbers: the **answer** is the merged mask (the pipeline's
``mask``, the one the IoU is computed on). It keeps the objects' own colours and gets a white-on-black
outline, while everything outside it is dimmed with a neutral grey. The **instances** are drawn as
dashed outlines with corner marks for their boxes and numbered labels ("1 0.93"), placed so that no two
labels overlap. Nothing is recoloured, so "the red circle" stays red.

``draw_answer`` does the drawing, ``draw_result`` adds a caption for one pipeline result,
``draw_comparison`` puts the ground truth beside the prediction, ``make_grid`` tiles panels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
from PIL import ImageDraw, ImageFont

__all__ = [
    "OUTLINE_COLOURS",
    "draw_answer",
    "draw_comparison",
    "draw_result",
    "make_grid",
    "place_labels",
    "to_rgb",
]

#: instance outline colours: neutral or absent from the synthetic scenes' object colours
OUTLINE_COLOURS: list[tuple[int, int, int]] = [
    (255, 255, 255),
    (0, 230, 255),
    (255, 60, 255),
    (180, 255, 120),
]
DIM_COLOUR = np.array((45, 45, 45), dtype=np.float32)  # neutral grey laid over what is not the answer
DIM_ALPHA = 0.6


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _as_bool_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """PIL "L"/"1" image, numpy or torch mask -> bool array of the image's (height, width)."""
    if isinstance(mask, PIL.Image.Image):
        if mask.size != size:
            mask = mask.resize(size, PIL.Image.NEAREST)
        return np.asarray(mask.convert("L")) > 127
    array = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if array.shape != (size[1], size[0]):
        raise ValueError(f"mask of shape {array.shape} does not match the image size {(size[1], size[0])}")
    return array > 0.5 if array.dtype.kind == "f" else array.astype(bool)


def to_rgb(image: Any) -> PIL.Image.Image:
    """PIL image, (H, W, 3) uint8 or [0, 1] float numpy array -> RGB PIL image."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    return PIL.Image.fromarray(array).convert("RGB")


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2 radius + 1) square."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _inner_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Mask pixels within ``width`` pixels of the background (the image border counts as background)."""
    background = np.pad(~mask, 1, constant_values=True)
    return mask & _dilate(background, width)[1:-1, 1:-1]


def _boxes_overlap(a: Sequence[float], b: Sequence[float], margin: float = 1.0) -> bool:
    return not (
        a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    )


def place_labels(
    sizes: Sequence[tuple[int, int]],
    anchors: Sequence[Sequence[float]],
    canvas: tuple[int, int],
) -> list[tuple[int, int, int, int]]:
    """Positions ``(x0, y0, x1, y1)`` for labels of ``sizes`` (w, h) near boxes ``anchors`` (x0, y0, x1, y1).

    Tries, in order: above the box's top-left corner, inside it, below the box, above and inside its
    top-right corner; takes the first place inside the ``canvas`` (width, height) that overlaps no label
    placed before. When all are taken, the label slides down (then up) from the first place until it is
    free. Labels never overlap one another when the canvas has room for them.
    """
    width, height = canvas
    placed: list[tuple[int, int, int, int]] = []
    for (w, h), (bx0, by0, bx1, by1) in zip(sizes, anchors):
        w, h = min(w, width), min(h, height)

        def clamp(x: float, y: float, w: int = w, h: int = h) -> tuple[int, int, int, int]:
            x = int(min(max(0, x), width - w))
            y = int(min(max(0, y), height - h))
            return (x, y, x + w, y + h)

        candidates = [
            clamp(bx0, by0 - h - 1),
            clamp(bx0 + 1, by0 + 1),
            clamp(bx0, by1 + 1),
            clamp(bx1 - w, by0 - h - 1),
            clamp(bx1 - w - 1, by0 + 1),
        ]
        free = [c for c in candidates if not any(_boxes_overlap(c, p) for p in placed)]
        if free:
            choice = free[0]
        else:
            first = candidates[0]
            choice = first
            offsets = [d for step in range(1, height + 1) for d in (step, -step)]
            for dy in offsets:
                moved = clamp(first[0], first[1] + dy)
                if not any(_boxes_overlap(moved, p) for p in placed):
                    choice = moved
                    break
        placed.append(choice)
    return placed


def _box_of(box: Sequence[float] | dict | None, mask: np.ndarray) -> tuple[float, float, float, float] | None:
    if box is None:
        ys, xs = np.nonzero(mask)
        return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
    if isinstance(box, dict):
        box = [box["xmin"], box["ymin"], box["xmax"], box["ymax"]]
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def draw_answer(
    image: Any,
    answer: Any | None,
    instances: Sequence[Any] = (),
    boxes: Sequence[Sequence[float] | dict | None] | None = None,
    labels: Sequence[str] | None = None,
    scale: int = 1,
) -> PIL.Image.Image:
    """Draw the ``answer`` mask and the ``instances`` on ``image`` without recolouring any object.

    Pixels outside ``answer`` are dimmed with a neutral grey (all of them when ``answer`` is None or
    empty: nothing is referred to); the answer keeps its colours and gets a white outline with a black
    rim just outside it. Each instance gets a dashed outline (1-2 px on its own boundary) in one of
    :data:`OUTLINE_COLOURS`, corner marks for its box (``[x0, y0, x1, y1]`` or
    ``{"xmin", "ymin", "xmax", "ymax"}`` in image pixels; from the mask when missing) and its label,
    placed by :func:`place_labels`. ``scale`` enlarges the picture (nearest) so small images stay readable.
    """
    base = to_rgb(image)
    width, height = base.size
    answer_mask = np.zeros((height, width), bool) if answer is None else _as_bool_mask(answer, base.size)
    inst_masks = [_as_bool_mask(m, base.size) for m in instances]

    def up(mask: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(mask, scale, 0), scale, 1) if scale != 1 else mask

    canvas = up(np.asarray(base).astype(np.float32))
    big_answer = up(answer_mask)
    canvas[~big_answer] = (1 - DIM_ALPHA) * canvas[~big_answer] + DIM_ALPHA * DIM_COLOUR
    if big_answer.any():
        ring = max(1, scale // 2)
        white = _dilate(big_answer, ring) & ~big_answer
        black = _dilate(big_answer, ring + 1) & ~big_answer & ~white
        canvas[white] = 255.0
        canvas[black] = 0.0
    ys, xs = np.mgrid[0 : canvas.shape[0], 0 : canvas.shape[1]]
    line = max(1, scale // 2)
    dash = (((xs + ys) // (3 * line + 1)) % 2).astype(bool)
    for k, mask in enumerate(inst_masks):
        edge = _inner_boundary(up(mask), line)
        canvas[edge & dash] = OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]
        canvas[edge & ~dash] = 0.0
    out = PIL.Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = _font(max(10, min(16, 4 * scale + 4)))
    anchors, texts, colours = [], [], []
    for k, mask in enumerate(inst_masks):
        box = _box_of(boxes[k] if boxes is not None and k < len(boxes) else None, mask)
        if box is None:
            continue
        x0, y0, x1, y1 = (v * scale for v in box)
        colour = OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]
        tick = max(3, min(12, int(min(x1 - x0, y1 - y0) / 4)))
        for cx, cy, dx, dy in (
            (x0, y0, 1, 1),
            (x1 - 1, y0, -1, 1),
            (x0, y1 - 1, 1, -1),
            (x1 - 1, y1 - 1, -1, -1),
        ):
            draw.line([(cx, cy), (cx + dx * tick, cy)], fill=colour, width=line)
            draw.line([(cx, cy), (cx, cy + dy * tick)], fill=colour, width=line)
        anchors.append((x0, y0, x1, y1))
        texts.append(labels[k] if labels is not None and k < len(labels) else str(k + 1))
        colours.append(colour)
    sizes = []
    for text in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        sizes.append((right - left + 6, bottom - top + 4))
    for text, colour, (lx0, ly0, lx1, ly1) in zip(texts, colours, place_labels(sizes, anchors, out.size)):
        draw.rectangle([lx0, ly0, lx1 - 1, ly1 - 1], fill=(20, 20, 20), outline=colour)
        left, top, _, _ = draw.textbbox((0, 0), text, font=font)
        draw.text((lx0 + 3 - left, ly0 + 2 - top), text, fill=colour, font=font)
    return out


def _caption(panel: PIL.Image.Image, lines: Sequence[str], font_size: int = 13) -> PIL.Image.Image:
    font = _font(font_size)
    width = max(panel.width, 120)
    chars = max(12, int(width / (font_size * 0.55)))
    wrapped = [w for line in lines for w in (textwrap.wrap(line, chars) or [""])]
    line_h = font_size + 4
    out = PIL.Image.new("RGB", (width, panel.height + line_h * len(wrapped) + 6), (255, 255, 255))
    out.paste(panel, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(wrapped):
        draw.text((4, panel.height + 3 + i * line_h), line, fill=(20, 20, 20), font=font)
    return out


def draw_result(
    image: Any,
    result: dict,
    sentence: str | None = None,
    scale: int = 1,
    title: str | None = None,
    note: str | None = None,
) -> PIL.Image.Image:
    """One pipeline result on its image, with a caption (see :func:`draw_answer` for the drawing).

    ``result`` is the pipeline's output dict (``mask``, ``score``, ``no_target``, ``instances``). The
    answer is ``result["mask"]`` (nothing when ``no_target``); instances are outlined and labelled
    "number score".
    """
    instances = result.get("instances", [])
    answer = None if result.get("no_target", False) else result.get("mask")
    panel = draw_answer(
        image,
        answer,
        [inst["mask"] for inst in instances],
        [inst["box"] for inst in instances],
        [f"{k} {inst['score']:.2f}" for k, inst in enumerate(instances, start=1)],
        scale=scale,
    )
    if result.get("no_target", False):
        verdict = f"no target (p(target) = {result.get('score', 0.0):.2f})"
    else:
        verdict = f"p(target) = {result.get('score', 0.0):.2f}, {len(instances)} instance(s)"
    lines = ([title] if title else []) + ([f'"{sentence}"'] if sentence else []) + [verdict]
    return _caption(panel, lines + ([note] if note else []))


def draw_comparison(
    image: Any,
    result: dict,
    sentence: str,
    ground_truth: Sequence[Any],
    scale: int = 1,
    note: str | None = None,
) -> PIL.Image.Image:
    """Ground truth (instance masks; empty for a no-target sentence) beside the prediction, same style.

    The ground-truth answer is the union of its instances. ``note`` (e.g. the IoU of the predicted
    answer with the ground-truth answer) is added under the prediction."""
    base = to_rgb(image)
    gt_masks = [_as_bool_mask(m, base.size) for m in ground_truth]
    union = np.zeros((base.height, base.width), bool)
    for m in gt_masks:
        union |= m
    gt_panel = draw_answer(base, union, gt_masks, None, None, scale=scale)
    gt_line = "no target" if not gt_masks else f"{len(gt_masks)} instance(s)"
    gt_panel = _caption(gt_panel, ["ground truth", f'"{sentence}"', gt_line])
    pred_panel = draw_result(base, result, sentence, scale=scale, title="prediction", note=note)
    height = max(gt_panel.height, pred_panel.height)
    out = PIL.Image.new("RGB", (gt_panel.width + pred_panel.width + 6, height), (255, 255, 255))
    out.paste(gt_panel, (0, 0))
    out.paste(pred_panel, (gt_panel.width + 6, 0))
    return out


def make_grid(
    panels: Sequence[PIL.Image.Image], columns: int = 2, gap: int = 10, title: str | None = None
) -> PIL.Image.Image:
    """Tile panels row by row (cells sized to the largest panel) on a light grey background.

    ``title`` adds a header line above the grid.
    """
    if not panels:
        raise ValueError("make_grid needs at least one panel")
    columns = max(1, min(columns, len(panels)))
    rows = (len(panels) + columns - 1) // columns
    cell_w = max(p.width for p in panels)
    cell_h = max(p.height for p in panels)
    out = PIL.Image.new(
        "RGB", (columns * cell_w + (columns + 1) * gap, rows * cell_h + (rows + 1) * gap), (235, 235, 235)
    )
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        out.paste(panel, (gap + c * (cell_w + gap), gap + r * (cell_h + gap)))
    if title:
        font = _font(16)
        header = PIL.Image.new("RGB", (out.width, 30), (40, 40, 40))
        ImageDraw.Draw(header).text((gap, 6), title, fill=(255, 255, 255), font=font)
        framed = PIL.Image.new("RGB", (out.width, out.height + header.height))
        framed.paste(header, (0, 0))
        framed.paste(out, (0, header.height))
        out = framed
    return out
