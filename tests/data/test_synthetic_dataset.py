"""Synthetic scene datasets: schema, determinism, masks vs boxes, kinds, and an independent re-check of every
sampled sentence by an oracle that reads the sentence *text* (not the expression tree)."""

import re

import numpy as np
import pytest

from refseg.data import decode_rle, mask_to_bbox, referring_features, synthetic_scene_splits, synthetic_scenes
from refseg.data.synthetic import COLOURS, SHAPES, sample_expressions, sample_scene
from refseg.data.synthetic.dataset import MAX_OBJECTS, scene_rng
from tests.data.scene_helpers import visible_fractions

_COLOUR = "|".join(COLOURS)
_NOUN = "|".join([*SHAPES, "shape"])
NP = rf"(?:(small|large) )?(?:({_COLOUR}) )?({_NOUN})"
NP_PLURAL = rf"(?:(small|large) )?(?:({_COLOUR}) )?({_NOUN})s"
_AXIS = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}
_PLACE = {"on the left": "left", "on the right": "right", "at the top": "top", "at the bottom": "bottom"}


def _matches(scene, size, colour, noun):
    return [
        i
        for i, o in enumerate(scene.objects)
        if (size is None or o.size == size)
        and (colour is None or o.colour == colour)
        and (noun == "shape" or o.shape == noun)
    ]


def _extreme(scene, cands, direction):
    axis, sign = _AXIS[direction]
    return min(cands, key=lambda i: sign * (scene.objects[i].cx, scene.objects[i].cy)[axis])


def _unique(scene, text):
    m = re.fullmatch(rf"the {NP}", text)
    cands = _matches(scene, *m.groups())
    assert len(cands) <= 1, f"'{text}' is ambiguous"
    return cands


def oracle(scene, sentence):
    """Targets of ``sentence`` in ``scene``, computed from the words alone."""
    s = scene.image_size
    if m := re.fullmatch(f"everything ({_COLOUR})", sentence):
        return {i for i, o in enumerate(scene.objects) if o.colour == m[1]}
    if m := re.fullmatch(f"all {NP_PLURAL}", sentence):
        return set(_matches(scene, *m.groups()))
    if m := re.fullmatch(f"the (two|three) {NP_PLURAL}", sentence):
        cands = _matches(scene, *m.groups()[1:])
        assert len(cands) in (0, {"two": 2, "three": 3}[m[1]])
        return set(cands)
    if " and " in sentence:
        parts = re.split(", | and ", sentence)
        found = [_unique(scene, p) for p in parts]
        assert all(len(f) == 1 for f in found)
        return {f[0] for f in found}
    if m := re.fullmatch(f"the (largest|smallest|leftmost|rightmost|topmost|bottommost) {NP}", sentence):
        cands = _matches(scene, *m.groups()[1:])
        if not cands:
            return set()
        if m[1] in ("largest", "smallest"):
            pick = (max if m[1] == "largest" else min)(cands, key=lambda i: scene.objects[i].radius)
        else:
            pick = _extreme(scene, cands, m[1][: -len("most")])
        return {pick}
    if m := re.fullmatch(f"the {NP} ({'|'.join(_PLACE)})", sentence):
        cands = _matches(scene, *m.groups()[:3])
        return {_extreme(scene, cands, _PLACE[m[4]])} if cands else set()
    if m := re.fullmatch(f"the {NP} (above|below|to the left of|to the right of) (the .*)", sentence):
        anchor = _unique(scene, m[5])
        if not anchor:
            return set()
        a = scene.objects[anchor[0]]
        out = set()
        for i in _matches(scene, *m.groups()[:3]):
            o = scene.objects[i]
            dx, dy = (o.cx - a.cx) / s, (o.cy - a.cy) / s
            along, across = {
                "above": (-dy, dx),
                "below": (dy, dx),
                "to the left of": (-dx, dy),
                "to the right of": (dx, dy),
            }[m[4]]
            if i != anchor[0] and along >= 0.08 and along >= abs(across):
                out.add(i)
        return out
    if re.fullmatch(f"the {NP}", sentence):
        return set(_unique(scene, sentence))
    raise AssertionError(f"the oracle cannot parse {sentence!r}")


def test_oracle_agrees_with_sampled_targets():
    rng = np.random.default_rng(123)
    kinds = {"single": 0, "multi": 0, "no_target": 0}
    for _ in range(150):
        scene = sample_scene(rng, image_size=128)
        for ref in sample_expressions(scene, 4, rng):
            assert oracle(scene, ref.sentence) == set(ref.targets), ref.sentence
            kinds[ref.kind] += 1
    assert min(kinds.values()) > 60  # every kind is exercised


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthetic_scenes(24, seed=5, image_size=96, cache_dir=str(tmp_path_factory.mktemp("a")))


def test_schema_and_ids(small):
    assert small.features == referring_features({"kind": small.features["kind"]})
    assert small.num_rows == 24 * 3
    assert len(set(small["sent_id"])) == len(set(small["ref_id"])) == small.num_rows
    assert sorted(set(small["image_id"])) == list(range(24))
    row = small[0]
    assert row["image"].size == (96, 96) and row["image"].mode == "RGB"


def test_rows_match_regenerated_scenes(small):
    """Instances are the visible masks of the scene generated from the image's own seed."""
    for row in small:
        k = row["image_id"]
        scene = sample_scene(scene_rng(5, "train", k, 0), image_size=96)
        visible = scene.visible_masks()
        assert min(visible_fractions(scene)) >= 0.6
        assert (np.asarray(row["image"]) == np.asarray(scene.render())).all()
        masks = []
        for inst in row["instances"]:
            i = inst["ann_id"] - k * MAX_OBJECTS
            mask = decode_rle(inst["segmentation"])
            assert (mask == visible[i]).all() and mask.any()
            assert inst["bbox"] == mask_to_bbox(mask)
            assert inst["category_id"] == SHAPES.index(scene.objects[i].shape) + 1
            masks.append(mask)
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                assert not (masks[a] & masks[b]).any()
        assert oracle(scene, row["sentence"]) == {
            inst["ann_id"] - k * MAX_OBJECTS for inst in row["instances"]
        }


def test_kinds_and_balance(small):
    counts = {"single": 0, "multi": 0, "no_target": 0}
    for row in small:
        n = len(row["instances"])
        counts[row["kind"]] += 1
        assert row["no_target"] == (n == 0) == (row["kind"] == "no_target")
        assert (row["kind"] == "single") == (n == 1)
        assert (row["kind"] == "multi") == (n >= 2)
    assert 0.3 < counts["single"] / 72 < 0.7 and 0.12 < counts["multi"] / 72 < 0.5
    assert 0.05 < counts["no_target"] / 72 < 0.4
    only = synthetic_scenes(4, seed=1, image_size=64, kind_weights={"no_target": 1.0}, include_kind=False)
    assert "kind" not in only.column_names and all(only["no_target"]) and not any(only["instances"])


def test_deterministic_for_a_seed(tmp_path, small):
    again = synthetic_scenes(
        24, seed=5, image_size=96, cache_dir=str(tmp_path / "b")
    )  # fresh cache: regenerated
    assert _same_rows(again, small)
    prefix = synthetic_scenes(5, seed=5, image_size=96, cache_dir=str(tmp_path / "c"))
    assert _same_rows(prefix, small.select(range(15)))
    other = synthetic_scenes(5, seed=6, image_size=96, cache_dir=str(tmp_path / "d"))
    assert other["sentence"] != prefix["sentence"]
    assert not (np.asarray(other[0]["image"]) == np.asarray(prefix[0]["image"])).all()


def _same_rows(a, b):
    if a.num_rows != b.num_rows:
        return False
    for x, y in zip(a, b):
        if not (np.asarray(x.pop("image")) == np.asarray(y.pop("image"))).all() or x != y:
            return False
    return True


def test_splits_are_disjoint(tmp_path):
    splits = synthetic_scene_splits(
        train=4, validation=3, test=2, seed=0, image_size=64, cache_dir=str(tmp_path)
    )
    assert {k: v.num_rows for k, v in splits.items()} == {"train": 12, "validation": 9, "test": 6}
    ids = [set(splits[k]["image_id"]) for k in splits]
    assert ids[0].isdisjoint(ids[1]) and ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    sent_ids = [i for k in splits for i in splits[k]["sent_id"]]
    assert len(sent_ids) == len(set(sent_ids))
    first = [np.asarray(splits[k][0]["image"]) for k in splits]
    assert not (first[0] == first[1]).all() and not (first[1] == first[2]).all()
    with pytest.raises(ValueError, match="sets 'split' itself"):
        synthetic_scene_splits(train=1, split="x")


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be at least 32"):
        synthetic_scenes(2, image_size=8)
    with pytest.raises(ValueError, match="kind_weights must map"):
        synthetic_scenes(2, seed=0, image_size=64, kind_weights={"plural": 1.0})
    assert synthetic_scenes(0).num_rows == 0
