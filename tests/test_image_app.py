"""App uploads go through refseg's image loader: upright, allow-listed, within the pixel cap."""

from __future__ import annotations

import time

import pytest

from refseg.app.limits import AppLimits
from refseg.app.upload import read_upload
from tests.image_helpers import DISPLAYED, EPS, bomb_png, install_fake_gs, is_displayed, phone_jpeg


def test_a_phone_portrait_upload_is_upright(tmp_path):
    (tmp_path / "upload-1").write_bytes(phone_jpeg())
    image = read_upload(tmp_path / "upload-1", AppLimits())
    assert image.size == DISPLAYED and is_displayed(image)


def test_an_eps_upload_is_refused_without_ghostscript(tmp_path, monkeypatch):
    log = install_fake_gs(tmp_path, monkeypatch)
    (tmp_path / "photo.png").write_bytes(EPS)
    with pytest.raises(ValueError, match="not an image in an allowed format .*PostScript/EPS"):
        read_upload(tmp_path / "photo.png", AppLimits())
    assert not log.exists()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_pixel_bomb_upload_is_refused_quickly(tmp_path, monkeypatch):
    monkeypatch.delenv("REFSEG_MAX_IMAGE_PIXELS", raising=False)
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    start = time.perf_counter()
    with pytest.raises(ValueError, match="13000 x 13000 = 169,000,000 pixels, over the limit of 89,478,485"):
        read_upload(tmp_path / "bomb.png", AppLimits())
    assert time.perf_counter() - start < 2.0
