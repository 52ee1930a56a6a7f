"""Overlay pictures: colours land on the masks, boxes and captions are drawn, grids tile panels."""

import numpy as np
import PIL.Image
import pytest

from refseg.visualization import PALETTE, draw_comparison, draw_masks, draw_result, make_grid


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_draw_masks_blends_palette_colours_only_inside_masks():
    image = np.zeros((20, 20, 3), np.uint8)
    out = np.asarray(draw_masks(image, [_mask(20, 20, 5, 15, 5, 15)], alpha=0.5))
    inside = out[10, 10]  # interior pixel: half black, half palette colour 0
    assert tuple(inside) == tuple(round(c * 0.5) for c in PALETTE[0])
    assert tuple(out[5, 10]) == PALETTE[0]  # outline pixel in full colour
    assert out[0, 0].sum() == 0 and out[19, 19].sum() == 0


def test_draw_masks_scale_boxes_and_pil_masks():
    image = PIL.Image.new("RGB", (10, 8), (255, 255, 255))
    mask = PIL.Image.fromarray((_mask(8, 10, 2, 6, 2, 6) * 255).astype(np.uint8), mode="L")
    out = draw_masks(
        image, [mask], boxes=[{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 7}], labels=["0.9"], scale=4
    )
    assert out.size == (40, 32)
    assert tuple(np.asarray(out)[4, 20]) == PALETTE[0]  # top edge of the box at y = 1 * 4


def test_draw_result_caption_and_no_target():
    image = np.full((16, 16, 3), 200, np.uint8)
    mask = PIL.Image.fromarray((_mask(16, 16, 0, 8, 0, 8) * 255).astype(np.uint8), mode="L")
    found = {
        "mask": mask,
        "score": 0.9,
        "no_target": False,
        "instances": [{"mask": mask, "box": {"xmin": 0, "ymin": 0, "xmax": 8, "ymax": 8}, "score": 0.8}],
    }
    empty = {"mask": PIL.Image.new("L", (16, 16)), "score": 0.1, "no_target": True, "instances": []}
    a = draw_result(image, found, "the red circle", scale=2)
    b = draw_result(image, empty, "the purple star", scale=2)
    assert a.width >= 32 and a.height > 32  # caption below the enlarged image
    assert not np.array_equal(np.asarray(a)[:32, :32], np.asarray(b)[:32, :32])
    assert np.all(np.asarray(b)[:32, :32] == 200)  # nothing painted for no-target


def test_comparison_and_grid_sizes():
    image = np.zeros((12, 12, 3), np.uint8)
    result = {"mask": PIL.Image.new("L", (12, 12)), "score": 0.2, "no_target": True, "instances": []}
    panel = draw_comparison(image, result, "all circles", [_mask(12, 12, 0, 4, 0, 4)], scale=3)
    assert panel.width > 2 * 36
    grid = make_grid([panel, panel, panel], columns=2, gap=5)
    assert grid.size == (2 * panel.width + 15, 2 * panel.height + 15)
    titled = make_grid([panel], title="refseg demo")
    assert titled.size == (panel.width + 20, panel.height + 20 + 30)
    with pytest.raises(ValueError, match="at least one panel"):
        make_grid([])


def test_mask_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        draw_masks(np.zeros((4, 4, 3), np.uint8), [np.zeros((5, 5), bool)])
