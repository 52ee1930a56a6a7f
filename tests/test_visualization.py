"""Pictures: the answer keeps its colours, the rest is dimmed, instances are outlines, labels never overlap."""

import numpy as np
import PIL.Image
import pytest

from refseg.visualization import (
    DIM_ALPHA,
    DIM_COLOUR,
    OUTLINE_COLOURS,
    draw_answer,
    draw_comparison,
    draw_result,
    make_grid,
    place_labels,
)


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _pil(mask):
    return PIL.Image.fromarray((mask * 255).astype(np.uint8), mode="L")


def _dimmed(rgb):
    return tuple(int(round((1 - DIM_ALPHA) * c + DIM_ALPHA * d)) for c, d in zip(rgb, DIM_COLOUR))


def test_answer_keeps_its_colours_and_the_rest_is_dimmed():
    image = np.zeros((20, 20, 3), np.uint8)
    image[...] = (200, 30, 30)  # a red scene
    out = np.asarray(draw_answer(image, _mask(20, 20, 6, 14, 6, 14)))
    assert tuple(out[10, 10]) == (200, 30, 30)  # inside the answer: the object's own colour
    assert tuple(out[6, 6]) == (200, 30, 30)  # the answer's own edge is not painted over
    assert tuple(out[5, 10]) == (255, 255, 255)  # white outline just outside
    assert tuple(out[4, 10]) == (0, 0, 0)  # black rim beyond it
    assert tuple(out[0, 0]) == _dimmed((200, 30, 30))  # neutral dimming keeps the hue
    assert out[0, 0, 0] > out[0, 0, 1] and out[0, 0, 0] > out[0, 0, 2]


def test_no_answer_dims_everything():
    image = np.full((8, 8, 3), 200, np.uint8)
    for answer in (None, np.zeros((8, 8), bool)):
        out = np.asarray(draw_answer(image, answer))
        assert (out == _dimmed((200, 200, 200))).all()


def test_instances_are_dashed_outlines_on_their_boundary():
    image = np.full((30, 30, 3), 100, np.uint8)
    inst = _mask(30, 30, 10, 20, 10, 20)
    out = np.asarray(draw_answer(image, inst, [inst], boxes=[[10, 10, 20, 20]], labels=["1 0.90"], scale=1))
    edge = [tuple(out[19, x]) for x in range(10, 20)]  # bottom edge (the label sits above the box)
    assert set(edge) <= {OUTLINE_COLOURS[0], (0, 0, 0)} and len(set(edge)) == 2  # dashed
    assert tuple(out[15, 15]) == (100, 100, 100)  # interior untouched


def test_scale_enlarges_and_boxes_accept_dicts():
    image = PIL.Image.new("RGB", (10, 8), (255, 255, 255))
    mask = _pil(_mask(8, 10, 2, 6, 2, 6))
    out = draw_answer(image, mask, [mask], boxes=[{"xmin": 2, "ymin": 2, "xmax": 6, "ymax": 6}], scale=4)
    assert out.size == (40, 32)
    assert tuple(np.asarray(out)[16, 16]) == (255, 255, 255)  # answer interior


def test_place_labels_never_overlap_and_stay_inside():
    sizes = [(30, 12)] * 6
    anchors = [(20, 20, 60, 60)] * 4 + [(0, 0, 10, 10), (90, 90, 100, 100)]  # four on the same box
    placed = place_labels(sizes, anchors, (100, 100))
    assert placed[0] == (20, 7, 50, 19)  # the first goes above the box's top-left corner
    for i, a in enumerate(placed):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= 100 and a[3] <= 100
        assert (a[2] - a[0], a[3] - a[1]) == (30, 12)
        for b in placed[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_draw_result_draws_the_merged_mask_as_the_answer():
    image = np.full((64, 64, 3), 200, np.uint8)
    merged = _mask(64, 64, 0, 10, 0, 10)
    elsewhere = _mask(64, 64, 50, 64, 50, 64)  # an instance that is not part of the answer
    box = {"xmin": 50, "ymin": 50, "xmax": 64, "ymax": 64}
    result = {
        "mask": _pil(merged),
        "score": 0.9,
        "no_target": False,
        "instances": [{"mask": _pil(elsewhere), "box": box, "score": 0.8}],
    }
    panel = np.asarray(draw_result(image, result, "the red circle"))
    assert panel.shape[0] > 64  # caption below
    assert tuple(panel[2, 2]) == (200, 200, 200)  # merged mask: bright, although no instance covers it
    assert tuple(panel[57, 57]) == _dimmed((200, 200, 200))  # instance outside the answer: dimmed inside
    no_target = dict(result, no_target=True, score=0.1)  # the answer of a no-target verdict is nothing
    assert tuple(np.asarray(draw_result(image, no_target))[2, 2]) == _dimmed((200, 200, 200))


def test_comparison_and_grid_sizes():
    image = np.zeros((30, 30, 3), np.uint8)
    result = {"mask": PIL.Image.new("L", (30, 30)), "score": 0.2, "no_target": True, "instances": []}
    panel = draw_comparison(image, result, "all circles", [_mask(30, 30, 0, 10, 0, 10)], scale=3)
    assert panel.width > 2 * 90
    assert tuple(np.asarray(panel)[25, 25]) == (0, 0, 0)  # ground-truth answer keeps its black pixels
    assert tuple(np.asarray(panel)[60, 60]) == _dimmed((0, 0, 0))
    grid = make_grid([panel, panel, panel], columns=2, gap=5)
    assert grid.size == (2 * panel.width + 15, 2 * panel.height + 15)
    titled = make_grid([panel], title="refseg demo")
    assert titled.size == (panel.width + 20, panel.height + 20 + 30)
    with pytest.raises(ValueError, match="at least one panel"):
        make_grid([])


def test_mask_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        draw_answer(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5), bool))
