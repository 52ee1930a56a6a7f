import numpy as np
import pytest
from PIL import Image

from refseg.data import decode_rle, encode_mask
from refseg.data.augmentation import PresencePluralityAugmentation

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
# (h, w, box y0, y1, x0, x1) of each single-target sample's image and instance
SINGLES = [(6, 8, 1, 3, 2, 5), (4, 4, 0, 2, 0, 2), (5, 7, 3, 5, 4, 7), (8, 6, 2, 8, 1, 3)]


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _instance(ann_id, mask, bbox):
    return {"ann_id": ann_id, "category_id": 1, "bbox": bbox, "segmentation": encode_mask(mask)}


def make_batch(pil=True):
    batch = []
    for i, (h, w, y0, y1, x0, x1) in enumerate(SINGLES):
        pixels = np.full((h, w, 3), COLORS[i], dtype=np.uint8)
        inst = _instance(
            i, _rect(h, w, y0, y1, x0, x1), [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        )
        image = Image.fromarray(pixels) if pil else pixels
        batch.append(
            {
                "image": image,
                "image_id": 10 + i,
                "sentence": f"thing {i}",
                "instances": [inst],
                "no_target": False,
            }
        )
    two = [
        _instance(7, _rect(5, 5, 0, 1, 0, 1), [0.0, 0.0, 1.0, 1.0]),
        _instance(8, _rect(5, 5, 4, 5, 4, 5), [4.0, 4.0, 1.0, 1.0]),
    ]
    batch.append(
        {
            "image": np.zeros((5, 5, 3), np.uint8),
            "image_id": 20,
            "sentence": "both",
            "instances": two,
            "no_target": False,
        }
    )
    batch.append(
        {
            "image": np.zeros((5, 5, 3), np.uint8),
            "image_id": 21,
            "sentence": "nothing",
            "instances": [],
            "no_target": True,
        }
    )
    return batch


def test_probability_zero_only_adds_labels():
    batch = make_batch()
    out = PresencePluralityAugmentation(tau_no=0.0, tau_multi=0.0, seed=0)(batch)
    assert [s["num_targets"] for s in out] == [1, 1, 1, 1, 2, 0]
    assert [s["plural"] for s in out] == [False, False, False, False, True, False]
    assert [s["augmentation"] for s in out] == [""] * 6
    assert [s["sentence"] for s in out] == [s["sentence"] for s in batch]
    assert all(o["image"] is b["image"] for o, b in zip(out, batch))
    assert "num_targets" not in batch[0]  # input untouched


def test_all_singles_become_no_target_with_another_sentence():
    batch = make_batch()
    out = PresencePluralityAugmentation(tau_no=1.0, tau_multi=1.0, seed=3)(batch)
    for i in range(4):
        assert (
            out[i]["no_target"] is True
            and out[i]["instances"] == []
            and out[i]["augmentation"] == "no_target"
        )
        assert out[i]["sentence"] in {f"thing {j}" for j in range(4) if j != i}
        assert (out[i]["num_targets"], out[i]["plural"]) == (0, False)
        assert out[i]["image"] is batch[i]["image"]
    # multi- and no-target samples are never sources; no singles left for a mosaic
    assert out[4]["sentence"] == "both" and out[4]["augmentation"] == "" and out[5]["sentence"] == "nothing"
    assert batch[0]["instances"] and not batch[0]["no_target"]


def test_no_target_never_borrows_a_sentence_of_the_same_image():
    batch = make_batch()[:2]
    batch[1]["image_id"] = batch[0]["image_id"]
    out = PresencePluralityAugmentation(tau_no=1.0, tau_multi=0.0, seed=0)(batch)
    assert [s["augmentation"] for s in out] == ["", ""] and [s["no_target"] for s in out] == [False, False]


@pytest.mark.parametrize("pil", [True, False])
def test_mosaic_places_images_masks_and_boxes(pil):
    batch = make_batch(pil)
    out = PresencePluralityAugmentation(tau_no=0.0, tau_multi=1.0, seed=1)(batch)
    mosaics = [i for i, s in enumerate(out) if s["augmentation"] == "mosaic"]
    assert len(mosaics) == 1 and len(out) == len(batch)
    m = out[mosaics[0]]
    assert isinstance(m["image"], Image.Image) == pil
    canvas = np.asarray(m["image"])
    ch, cw = 8, 8  # largest height and width of the four sources
    assert canvas.shape == (2 * ch, 2 * cw, 3)
    assert (m["num_targets"], m["plural"], m["no_target"], m["image_id"]) == (4, True, False, -1)
    # find each source's cell from its colour at the cell's top-left pixel
    cell_of = {}
    for cell in range(4):
        oy, ox = (cell // 2) * ch, (cell % 2) * cw
        cell_of[COLORS.index(tuple(int(v) for v in canvas[oy, ox]))] = cell
    assert sorted(cell_of) == [0, 1, 2, 3]
    order = sorted(range(4), key=lambda i: cell_of[i])
    assert m["sentence"] == " and ".join(f"thing {i}" for i in order)
    by_ann = {inst["ann_id"]: inst for inst in m["instances"]}
    for i, (h, w, y0, y1, x0, x1) in enumerate(SINGLES):
        oy, ox = (cell_of[i] // 2) * ch, (cell_of[i] % 2) * cw
        expected = np.zeros((2 * ch, 2 * cw), dtype=bool)
        expected[oy + y0 : oy + y1, ox + x0 : ox + x1] = True
        assert np.array_equal(decode_rle(by_ann[i]["segmentation"]), expected)
        assert by_ann[i]["bbox"] == [ox + x0, oy + y0, x1 - x0, y1 - y0]
        assert np.all(canvas[oy : oy + h, ox : ox + w] == COLORS[i])
        if h < ch:
            assert np.all(canvas[oy + h : oy + ch, ox : ox + cw] == 0)  # rest of the cell is black
    # the other three sources stay in the batch unchanged
    assert sorted(s["sentence"] for i, s in enumerate(out[:4]) if i != mosaics[0]) == sorted(
        f"thing {i}" for i in range(4) if i != mosaics[0]
    )


def test_mosaic_with_cell_size_resizes_masks():
    batch = make_batch()[3:4] + make_batch()[1:2]  # 8x6 and 4x4 sources
    out = PresencePluralityAugmentation(tau_no=0.0, tau_multi=1.0, seed=0, cell_size=4)(batch)
    m = next(s for s in out if s["augmentation"] == "mosaic")
    assert np.asarray(m["image"]).shape == (8, 8, 3) and m["num_targets"] == 2
    canvas = np.asarray(m["image"])
    tall = next(i for i in m["instances"] if i["ann_id"] == 3)  # 8x6 scaled by 0.5 to 4x3
    cell = next(c for c in range(4) if tuple(canvas[(c // 2) * 4, (c % 2) * 4]) == COLORS[3])
    oy, ox = (cell // 2) * 4, (cell % 2) * 4
    expected = np.zeros((8, 8), dtype=bool)
    expected[oy + 1 : oy + 4, ox : ox + 1] = True  # nearest samples source rows 1,3,5,7 and cols 1,3,5
    assert np.array_equal(decode_rle(tall["segmentation"]), expected)
    assert tall["bbox"] == [ox + 0.5, oy + 1.0, 1.0, 3.0]


def test_single_selection_makes_no_mosaic():
    out = PresencePluralityAugmentation(tau_no=0.0, tau_multi=1.0, seed=0)(make_batch()[:1])
    assert out[0]["augmentation"] == "" and out[0]["sentence"] == "thing 0"


def test_seed_determinism_and_rate():
    def run(seed):
        aug = PresencePluralityAugmentation(tau_no=0.5, tau_multi=0.5, seed=seed)
        return [[(s["sentence"], s["augmentation"]) for s in aug(make_batch())] for _ in range(5)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    aug = PresencePluralityAugmentation(tau_no=0.5, tau_multi=0.0, seed=0)
    made = sum(s["augmentation"] == "no_target" for _ in range(200) for s in aug(make_batch()))
    assert 0.42 < made / 800 < 0.58


def test_errors():
    with pytest.raises(ValueError, match=r"tau_no must be a probability in \[0, 1\], got 1.5"):
        PresencePluralityAugmentation(tau_no=1.5)
    with pytest.raises(ValueError, match=r"sample 0 lacks \['no_target'\]"):
        PresencePluralityAugmentation()([{"image": None, "sentence": "a", "instances": []}])
