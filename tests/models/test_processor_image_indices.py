"""``image_indices`` at the processors' public boundary: integers only, floats refused instead of truncated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg.models.instalign import InstAlignImageProcessor, InstAlignProcessor
from tests.processing_helpers import tiny_tokenizer

IMAGES = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)]


@pytest.fixture
def processor() -> InstAlignProcessor:
    return InstAlignProcessor(InstAlignImageProcessor(size=8), tiny_tokenizer(model_max_length=6))


@pytest.mark.parametrize(
    "indices",
    [[0, 1.7], [0.0, 1.0], torch.tensor([0.0, 1.0]), np.array([0.0, 1.9]), [True, False]],
    ids=["list 1.7", "integral floats", "float tensor", "float array", "bools"],
)
def test_non_integer_image_indices_are_refused(processor, indices):
    with pytest.raises(
        ValueError,
        match=r"^image_indices must be integers \(one image index per sentence\), got torch\.(float|bool)",
    ):
        processor(images=IMAGES, text=["a", "b"], image_indices=indices)


def test_non_numbers_are_refused(processor):
    with pytest.raises(ValueError, match=r"^image_indices must be integers .*got list"):
        processor(images=IMAGES, text=["a", "b"], image_indices=["0", "x"])


@pytest.mark.parametrize(
    "indices", [[1, 0], np.array([1, 0], dtype=np.uint8), torch.tensor([1, 0], dtype=torch.int32)]
)
def test_integer_image_indices_of_any_integer_type_still_work(processor, indices):
    out = processor(images=IMAGES, text=["a", "b"], image_indices=indices)
    assert out["image_indices"].tolist() == [1, 0] and out["image_indices"].dtype == torch.long
