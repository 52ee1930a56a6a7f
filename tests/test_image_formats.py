"""Only allowed raster formats are decoded, by content, at every entry point; Ghostscript is never started."""

from __future__ import annotations

import io

import datasets
import numpy as np
import PIL.Image
import pytest

from refseg.data.images import load_row_image, without_image_decoding
from refseg.image_processing_utils import ReferringSegmentationImageProcessorBase
from refseg.image_utils import IMAGE_FORMATS, ImageFileError, load_image
from tests.image_helpers import EPS, data_url, install_fake_gs


@pytest.fixture
def gs_log(tmp_path, monkeypatch):
    log = install_fake_gs(tmp_path, monkeypatch)
    yield log
    assert not log.exists(), f"Ghostscript was started: {log.read_text()}"


def test_the_stand_in_gs_would_see_an_unrestricted_decode(tmp_path, monkeypatch):
    """Control: Pillow without an allow-list runs the stand-in, so the fixture above can see a call."""
    log = install_fake_gs(tmp_path, monkeypatch)
    with pytest.raises(OSError):  # the stand-in writes no picture
        PIL.Image.open(io.BytesIO(EPS)).load()
    assert "-sDEVICE=" in log.read_text()  # Pillow ran it on the PostScript


def _refused(source, **kwargs) -> str:
    with pytest.raises(ImageFileError) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "<_io." not in message and "object at 0x" not in message
    assert "allowed format" in message and "PostScript/EPS" in message
    return message


def test_an_eps_file_named_png_is_refused_as_a_path(gs_log, tmp_path):
    (tmp_path / "photo.png").write_bytes(EPS)
    assert "photo.png" in _refused(tmp_path / "photo.png")


def test_an_eps_file_is_refused_as_a_data_url_and_as_bytes(gs_log):
    _refused(data_url(EPS, "image/png"))
    _refused(EPS)
    _refused(bytearray(EPS))


def test_an_eps_file_in_a_dataset_row_is_refused(gs_log):
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": EPS, "path": "x.png"}], "image_id": [7]}, features)
    row = without_image_decoding(ds)[0]
    with pytest.raises(ImageFileError, match="image bytes of x.png: not an image in an allowed format"):
        load_row_image(row)
    with pytest.raises(ImageFileError, match="PostScript/EPS"):
        load_image({"bytes": EPS, "path": None})


def test_a_lazily_opened_eps_image_is_refused_by_the_processor(gs_log, tmp_path):
    (tmp_path / "a.eps").write_bytes(EPS)
    image = PIL.Image.open(tmp_path / "a.eps")  # opened by the caller, not decoded yet
    with pytest.raises(ImageFileError, match="image 0 is a EPS file opened but not decoded"):
        ReferringSegmentationImageProcessorBase(size=8)(image)


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_allowed_format_opens_by_content_whatever_its_name(fmt, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (9, 13, 3), np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, fmt)
    (tmp_path / "misnamed.eps").write_bytes(out.getvalue())
    for source in (tmp_path / "misnamed.eps", out.getvalue(), data_url(out.getvalue(), "text/plain")):
        image = load_image(source)
        assert image.size == (13, 9)
        if fmt in ("PNG", "BMP", "TIFF"):  # lossless
            assert np.array_equal(np.asarray(image.convert("RGB")), pixels)


def test_text_and_html_are_named_without_an_object_repr():
    with pytest.raises(
        ImageFileError, match=r"^cannot read image bytes \(15 bytes\): .* looks like an HTML page$"
    ):
        load_image(b"<html>hi</html>")
    with pytest.raises(ImageFileError, match="looks like text$"):
        load_image(data_url(b"just some words", "image/jpeg"))
