"""The pixel cap: a 20 KB PNG of 13000 x 13000 pixels is refused from its header, quickly, at every entry point."""

from __future__ import annotations

import time

import datasets
import numpy as np
import PIL.Image
import pytest

from refseg.data.builder import RefsegDataError, read_image_size
from refseg.data.images import load_row_image, without_image_decoding
from refseg.image_processing_utils import ReferringSegmentationImageProcessorBase
from refseg.image_utils import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageTooLargeError,
    load_image,
    max_image_pixels,
)
from tests.image_helpers import bomb_png, data_url, send, serve

# Pillow warns when it opens the header of an image over its own limit; refseg's refusal follows
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

REFUSED = r"13000 x 13000 = 169,000,000 pixels, over the limit of 89,478,485 pixels \(raise it with the REFSEG_MAX_IMAGE_PIXELS"


def _quickly_refused(source, what: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=f"{what}.*{REFUSED}") as info:
        load_image(source, timeout=10)
    assert time.perf_counter() - start < 2.0
    assert "\n" not in str(info.value)


def test_the_default_cap_is_documented_and_about_90_mp(monkeypatch):
    monkeypatch.delenv("REFSEG_MAX_IMAGE_PIXELS", raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 89_478_485
    assert len(bomb_png()) < 30_000


def test_a_bomb_is_refused_as_path_bytes_data_url_and_url(tmp_path, monkeypatch):
    monkeypatch.delenv("REFSEG_MAX_IMAGE_PIXELS", raising=False)
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    _quickly_refused(tmp_path / "bomb.png", "image file .*bomb.png")
    _quickly_refused(bomb_png(), r"image bytes \(\d+ bytes\)")
    _quickly_refused(data_url(bomb_png()), "data:image/png")
    with serve({"/bomb.png": lambda h: send(h, 200, bomb_png(), "image/png")}) as base:
        _quickly_refused(f"{base}/bomb.png", "bomb.png")


def test_a_bomb_in_a_dataset_row_or_a_dataset_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("REFSEG_MAX_IMAGE_PIXELS", raising=False)
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": bomb_png(), "path": "b.png"}]}, datasets.Features({"image": datasets.Image()})
    )
    with pytest.raises(ImageTooLargeError, match=REFUSED):
        load_row_image(without_image_decoding(ds)[0])
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    with pytest.raises(RefsegDataError, match=f"bomb.png: the image is {REFUSED}"):
        read_image_size(tmp_path / "bomb.png")


def test_a_lazily_opened_bomb_is_refused_by_the_processor_before_decoding(tmp_path, monkeypatch):
    monkeypatch.delenv("REFSEG_MAX_IMAGE_PIXELS", raising=False)
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    image = PIL.Image.open(tmp_path / "bomb.png")
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=f"image 0 is {REFUSED}"):
        ReferringSegmentationImageProcessorBase(size=8)(image)
    assert time.perf_counter() - start < 2.0
    with pytest.raises(
        ImageTooLargeError, match="image 0 is 100 x 100 = 10,000 pixels, over the limit of 9,999"
    ):
        monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "9999")
        ReferringSegmentationImageProcessorBase(size=8)(np.zeros((100, 100, 3), np.uint8))


def test_the_cap_follows_the_environment_and_the_argument(tmp_path, monkeypatch):
    PIL.Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "199")
    with pytest.raises(ImageTooLargeError, match="20 x 10 = 200 pixels, over the limit of 199 pixels"):
        load_image(tmp_path / "small.png")
    assert load_image(tmp_path / "small.png", max_pixels=200).size == (20, 10)
    monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "200")
    assert load_image(tmp_path / "small.png").size == (20, 10)
    monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(
        ValueError, match="REFSEG_MAX_IMAGE_PIXELS must be a positive whole number, got 'lots'"
    ):
        load_image(tmp_path / "small.png")
    with pytest.raises(ValueError, match="positive whole number"):
        load_image(tmp_path / "small.png", max_pixels=0)


def test_a_raised_cap_lets_the_bomb_through(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "170000000")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    with pytest.warns(PIL.Image.DecompressionBombWarning):  # Pillow's own warning above its limit
        assert load_image(tmp_path / "bomb.png").size == (13000, 13000)
