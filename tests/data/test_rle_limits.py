"""An RLE's claimed size is compared with the image before any pixel is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from refseg.data import RefsegDataError, decode_rle, encode_mask
from refseg.data.masks import MAX_MASK_PIXELS, rle_runs
from tests.data.bounded_run import run_bounded

BOMB = {"size": [60000, 60000], "counts": "PPYWY[3"}  # one background run of 3.6e9 pixels: 3.35 GiB decoded


def test_the_bomb_is_a_valid_rle_of_its_claimed_size():
    h, w, runs = rle_runs(BOMB)
    assert (h, w) == (60000, 60000) and runs.tolist() == [60000 * 60000]
    assert len(BOMB["counts"]) < 10


def test_decode_compares_the_claimed_size_with_the_image_first():
    with pytest.raises(
        RefsegDataError, match=r"^gt: RLE size \[60000, 60000\] does not match the image size \[64, 64\]$"
    ):
        decode_rle(BOMB, size=(64, 64), where="gt")
    mask = np.zeros((64, 64), dtype=bool)
    mask[3:9, 5:7] = True
    assert np.array_equal(decode_rle(encode_mask(mask), size=(64, 64)), mask)


CALLERS = {
    "merge_instances": "from refseg.data.masks import merge_instances\n"
    "merge_instances([{'segmentation': BOMB}], 64, 64)",
    "decode_rle without a size": "from refseg.data.masks import decode_rle\ndecode_rle(BOMB)",
    "metrics row_gt_mask": "from refseg.metrics.dataset_rows import row_gt_mask\n"
    "row_gt_mask({'instances': [{'segmentation': BOMB}], 'no_target': False}, 64, 64)",
    "augmentation mosaic": "import numpy as np\n"
    "from refseg.data.augmentation import PresencePluralityAugmentation\n"
    "part = {'image': np.zeros((64, 64, 3), np.uint8), 'sentence': 'a', 'no_target': False,\n"
    "        'instances': [{'segmentation': BOMB, 'bbox': [0, 0, 1, 1]}]}\n"
    "PresencePluralityAugmentation().mosaic(part, [part, part], [0, 1])",
    "processor mask labels": "from refseg.image_processing_utils import ReferringSegmentationImageProcessorBase\n"
    "ReferringSegmentationImageProcessorBase().prepare_mask_labels([[{'segmentation': BOMB}]], [(64, 64)], (8, 8))",
}
EXPECTED = {
    "merge_instances": "instance #0: mask size [60000, 60000] does not match the image size [64, 64]",
    "decode_rle without a size": f"RLE size [60000, 60000] is over {MAX_MASK_PIXELS} pixels",
    "metrics row_gt_mask": "has an RLE of size (60000, 60000), but the predicted mask is (64, 64)",
    "augmentation mosaic": "instance mask (60000, 60000) does not match its image (64, 64)",
    "processor mask labels": "instance: RLE size [60000, 60000] does not match the image size [64, 64]",
}


@pytest.mark.parametrize("caller", CALLERS)
def test_every_decoder_refuses_the_bomb_without_allocating_it(caller):
    preload = "import refseg.image_processing_utils" if caller == "processor mask labels" else ""
    result = run_bounded(f"BOMB = {BOMB!r}\n{CALLERS[caller]}", extra_mb=512, timeout=120, preload=preload)
    assert EXPECTED[caller] in result.stdout, result.stdout
    assert "MemoryError" not in result.stdout


@pytest.mark.parametrize(
    "counts, total",
    [([1, 2], 3), ([5, 4], 9), ("0:", 10), ("03", 3)],
)
def test_counts_must_sum_to_height_times_width(counts, total):
    with pytest.raises(RefsegDataError, match=f"RLE counts sum to {total}, not height\\*width = 4"):
        decode_rle({"size": [2, 2], "counts": counts}, size=(2, 2))
