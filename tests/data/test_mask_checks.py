"""RLE and polygon checks in ``refseg.data.masks``: bad run lengths are refused, never decoded."""

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from refseg.data import RefsegDataError, decode_rle, encode_mask, merge_instances, polygons_to_rle
from refseg.data.masks import canonical_rle, rle_runs
from tests.data.refer_fixtures import compressed_rle, uncompressed_rle


def test_decode_matches_pycocotools_on_valid_rles():
    rng = np.random.default_rng(0)
    for i in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        if i % 3 == 0:  # long runs (multi-character counts)
            mask = np.zeros((h, w), dtype=bool)
            mask[int(rng.integers(0, h)) :, int(rng.integers(0, w)) :] = True
        rle = compressed_rle(mask)
        assert np.array_equal(decode_rle(rle), mask)
        assert np.array_equal(decode_rle(uncompressed_rle(mask)), mask)
        assert canonical_rle(uncompressed_rle(mask)) == rle
    big = np.zeros((900, 1100), dtype=bool)
    big[300:, 700:] = True  # runs of 600 and 300, counts with several characters and deltas
    assert np.array_equal(decode_rle(encode_mask(big)), big)


def test_hand_decoded_string():
    # 3x4 mask, runs [2, 3, 7]: '2', '3', '7' in the COCO alphabet (value + 48, no continuation bit)
    h, w, runs = rle_runs({"size": [3, 4], "counts": "237"})
    assert (h, w, runs.tolist()) == (3, 4, [2, 3, 7])
    expected = np.zeros(12, dtype=bool)
    expected[2:5] = True
    assert np.array_equal(decode_rle({"size": [3, 4], "counts": b"237"}), expected.reshape(4, 3).T)


@pytest.mark.parametrize(
    "counts,message",
    [
        ("", r"sum to 0, not height\*width = 12"),  # pycocotools decodes this to uninitialised memory
        (b"", r"sum to 0"),
        ("23", r"sum to 5, not height\*width = 12"),
        ("2377", r"sum to 22"),  # the 4th run is 7 + the 2nd (delta coded): 2 + 3 + 7 + 10
        ("!!!", r"characters outside the COCO alphabet"),
        ("2\x7f", r"characters outside the COCO alphabet"),
        ("é", r"not ASCII"),
        ("2P", r"truncated"),  # 'P' = 32: continuation bit set on the last character
        ("1O", r"must not be negative"),  # 'O' = 31 with the sign bit: -1
        ("ooooooo0", r"too large"),
        ([2, 3], r"sum to 5"),
        ([13, -1], r"must not be negative"),
        ([2.0, 10], r"must hold integers"),
        ([True, 11], r"must hold integers"),
        (None, r"must be a list, str or bytes"),
    ],
)
def test_bad_counts_are_refused(counts, message):
    with pytest.raises(RefsegDataError, match=message) as err:
        decode_rle({"size": [3, 4], "counts": counts})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "rle,message",
    [
        ({"counts": "c"}, r"expected a COCO RLE dict"),
        ([1, 2], r"expected a COCO RLE dict"),
        ({"size": [3], "counts": "c"}, r"'size' must be \[height, width\]"),
        ({"size": [-3, -4], "counts": "<"}, r"must not be negative"),
        ({"size": [3.5, 4], "counts": "<"}, r"field 'size' must be an integer"),
        ({"size": ["a", 4], "counts": "<"}, r"field 'size' must be an integer"),
    ],
)
def test_bad_sizes_are_refused(rle, message):
    with pytest.raises(RefsegDataError, match=message):
        decode_rle(rle)


def test_polygon_far_outside_is_clipped_exactly():
    # the rectangle x in [2, 1e12], y in [2, 8]: inside a 20x30 image it is x in [2, 30]
    far = polygons_to_rle([[2, 2, 1e12, 2, 1e12, 8, 2, 8]], 20, 30)
    near = mask_utils.merge(mask_utils.frPyObjects([[2, 2, 60, 2, 60, 8, 2, 8]], 20, 30))
    assert far["counts"] == near["counts"].decode("ascii")
    mask = decode_rle(far)
    assert mask[3:8, 3:].all() and not mask[:2].any() and not mask[9:].any()


def test_polygons_wholly_outside_give_an_empty_mask():
    for poly in ([1e9, 1e9, 2e9, 1e9, 2e9, 2e9], [-1e300, 0, -1e299, 5, -1e300, 10]):
        assert not decode_rle(polygons_to_rle([poly], 20, 30)).any()


@pytest.mark.parametrize("poly", [[0, 0, math.nan, 5, 5, 5], [0, 0, math.inf, 5, 5, 5], [0, 0, 5, 5]])
def test_polygons_without_three_finite_points_are_refused(poly):
    with pytest.raises(RefsegDataError, match="at least 3 points with finite coordinates"):
        polygons_to_rle([poly], 20, 30)


@pytest.mark.parametrize("polys", [[[0, 0, "5", 5, 5, 5]], [[0, 0, True, 5, 5, 5]], [None], "abc"])
def test_malformed_polygons_are_refused(polys):
    with pytest.raises(RefsegDataError, match="malformed polygon segmentation"):
        polygons_to_rle(polys, 20, 30)


def test_merge_instances_refuses_another_size():
    inst = {"segmentation": encode_mask(np.ones((4, 4), dtype=bool))}
    with pytest.raises(
        RefsegDataError, match=r"instance #0: mask size \[4, 4\] does not match the image size \[3, 4\]"
    ):
        merge_instances([inst], 3, 4)
