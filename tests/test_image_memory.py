"""The processor resizes without a full-size float copy of the image, and gets the same numbers as before."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

import refseg.image_utils as image_utils
from refseg.image_utils import resize_to_chw_float, to_chw_float


def _reference(image, size: tuple[int, int]) -> torch.Tensor:
    """The earlier computation: the whole image in float, then one antialiased bilinear resize."""
    tensor = to_chw_float(image)
    if tuple(tensor.shape[1:]) == size:
        return tensor
    return F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _images():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (203, 317, 3), np.uint8)
    yield PIL.Image.fromarray(rgb)
    yield PIL.Image.fromarray(rgb).convert("P")
    yield PIL.Image.fromarray(rgb[:, :, 0])
    yield PIL.Image.fromarray(rng.integers(0, 65536, (203, 317), np.uint16))
    yield rng.random((203, 317, 3)) * 300 - 20  # float, min-max scaled
    yield torch.from_numpy(rgb).permute(2, 0, 1)
    yield rgb[::-1, :, :]  # a negative-stride view


@pytest.mark.filterwarnings("ignore:numpy float64 image with values")
@pytest.mark.parametrize("size", [(480, 480), (64, 31), (203, 100), (90, 317), (203, 317)])
def test_strip_resize_equals_the_whole_image_resize(size, monkeypatch):
    monkeypatch.setattr(image_utils, "_STRIP_PIXELS", 317 * 17)  # many strips of 17 rows
    for image in _images():
        assert torch.equal(resize_to_chw_float(image, size), _reference(image, size))


def test_the_processor_peak_memory_stays_near_one_uint8_copy(tmp_path):
    """A 4000 x 3000 photo (36 MB as uint8, 144 MB as float32) through the processor adds < 60 MiB at peak."""
    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np, PIL.Image, torch
        torch.set_num_threads(1)
        from refseg.image_processing_utils import ReferringSegmentationImageProcessorBase
        processor = ReferringSegmentationImageProcessorBase(size=480)
        image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), np.uint8))
        processor(PIL.Image.new("RGB", (64, 64)))  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = processor(image)["pixel_values"]
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, tuple(out.shape))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    grown_mib, shape = done.stdout.split(maxsplit=1)
    assert shape.strip() == "(1, 3, 480, 480)"
    assert float(grown_mib) < 60, f"peak grew by {grown_mib} MiB"
