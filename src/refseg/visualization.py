"""Overlay pictures of referring-segmentation results (PIL only).

``draw_result`` paints one pipeline result on its image: each instance mask in its own colour with
its box and score, the sentence and the no-target decision in a caption. ``draw_comparison`` puts
the ground truth next to the prediction, and ``make_grid`` tiles several panels into one picture.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
from PIL import ImageDraw, ImageFont

__all__ = ["PALETTE", "draw_comparison", "draw_masks", "draw_result", "make_grid"]

# distinct, saturated colours (Tableau 10 order)
PALETTE: list[tuple[int, int, int]] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (127, 127, 127),
]


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


def _to_rgb(image: Any) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    return PIL.Image.fromarray(array).convert("RGB")


def draw_masks(
    image: Any,
    masks: Sequence[Any],
    boxes: Sequence[Sequence[float] | dict] | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    scale: int = 1,
) -> PIL.Image.Image:
    """Blend ``masks`` in palette colours onto ``image``, outline them, draw ``boxes`` and ``labels``.

    Boxes are ``[x0, y0, x1, y1]`` or ``{"xmin", "ymin", "xmax", "ymax"}`` in image pixels; ``scale``
    enlarges the picture (nearest) so small images stay readable.
    """
    base = _to_rgb(image)
    canvas = np.asarray(base).astype(np.float32)
    bool_masks = [_as_bool_mask(m, base.size) for m in masks]
    for k, mask in enumerate(bool_masks):
        colour = np.array(PALETTE[k % len(PALETTE)], dtype=np.float32)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colour
    out = PIL.Image.fromarray(canvas.round().astype(np.uint8))
    if scale != 1:
        out = out.resize((base.width * scale, base.height * scale), PIL.Image.NEAREST)
    draw = ImageDraw.Draw(out)
    font = _font(max(10, 5 * scale))
    for k, mask in enumerate(bool_masks):
        colour = PALETTE[k % len(PALETTE)]
        # outline: mask pixels with a background 4-neighbour
        padded = np.pad(mask, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        ys, xs = np.nonzero(mask & ~inner)
        for y, x in zip(ys.tolist(), xs.tolist()):
            draw.rectangle([x * scale, y * scale, (x + 1) * scale - 1, (y + 1) * scale - 1], fill=colour)
        if boxes is not None and k < len(boxes) and boxes[k] is not None:
            box = boxes[k]
            if isinstance(box, dict):
                box = [box["xmin"], box["ymin"], box["xmax"], box["ymax"]]
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            draw.rectangle(
                [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=max(1, scale // 2)
            )
            if labels is not None and k < len(labels):
                text = labels[k]
                tx = x0 + 2
                ty = y0 - font.size - 4 if y0 > font.size + 4 else y0 + 2
                bbox = draw.textbbox((tx, ty), text, font=font)
                draw.rectangle([bbox[0] - 2, bbox[1] - 1, bbox[2] + 2, bbox[3] + 1], fill=colour)
                draw.text((tx, ty), text, fill=(255, 255, 255), font=font)
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
    """One pipeline result on its image: instances in colours with boxes and scores, and a caption.

    ``result`` is the pipeline's output dict (``mask``, ``score``, ``no_target``, ``instances``).
    When there are no instances but the union mask is not empty, the union mask is drawn.
    """
    instances = result.get("instances", [])
    if instances:
        masks = [inst["mask"] for inst in instances]
        boxes = [inst["box"] for inst in instances]
        labels = [f"{inst['score']:.2f}" for inst in instances]
    elif not result.get("no_target", False) and result.get("mask") is not None:
        masks, boxes, labels = [result["mask"]], None, None
    else:
        masks, boxes, labels = [], None, None
    panel = draw_masks(image, masks, boxes, labels, scale=scale)
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
    """Ground truth (instance masks; empty for a no-target sentence) beside the prediction.

    ``note`` (e.g. the IoU with the ground truth) is added under the prediction."""
    base = _to_rgb(image)
    gt_masks = [_as_bool_mask(m, base.size) for m in ground_truth]
    gt_boxes = []
    for m in gt_masks:
        ys, xs = np.nonzero(m)
        gt_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else None)
    gt_panel = draw_masks(base, gt_masks, gt_boxes, ["gt"] * len(gt_masks), scale=scale)
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
