"""EXIF orientation is applied wherever refseg decodes an image: a phone portrait comes out upright."""

from __future__ import annotations

import warnings

import datasets
import numpy as np
import PIL.Image
import pytest

from refseg.data.images import load_row_image, without_image_decoding
from refseg.data.masks import encode_mask
from refseg.image_utils import load_image
from tests.image_helpers import DISPLAYED, STORED, data_url, is_displayed, phone_jpeg, send, serve


def test_paths_bytes_and_data_urls_are_upright(tmp_path):
    (tmp_path / "portrait.jpg").write_bytes(phone_jpeg())
    for source in (
        tmp_path / "portrait.jpg",
        str(tmp_path / "portrait.jpg"),
        phone_jpeg(),
        data_url(phone_jpeg()),
    ):
        image = load_image(source)
        assert is_displayed(image), type(source)
        assert 0x0112 not in image.getexif()  # orientation applied once, tag removed


def test_urls_are_upright():
    routes = {"/p.jpg": lambda h: send(h, 200, phone_jpeg(), "image/jpeg")}
    with serve(routes) as base:
        assert is_displayed(load_image(f"{base}/p.jpg", timeout=10))


def test_the_stored_orientation_on_request(tmp_path):
    (tmp_path / "portrait.jpg").write_bytes(phone_jpeg())
    assert load_image(tmp_path / "portrait.jpg", apply_exif_orientation=False).size == STORED


def _rows(mask_size: tuple[int, int]) -> datasets.Dataset:
    """One dataset row holding the phone JPEG, with one instance mask of ``mask_size`` (width, height)."""
    mask = np.zeros((mask_size[1], mask_size[0]), np.uint8)
    mask[:5, -5:] = 1
    instance = {
        "ann_id": 1,
        "category_id": 1,
        "bbox": [0.0, 0.0, 5.0, 5.0],
        "segmentation": encode_mask(mask),
    }
    from refseg.data.schema import referring_features

    features = referring_features()
    row = {
        "image": {"bytes": phone_jpeg(), "path": "portrait.jpg"},
        "image_id": 1,
        "ref_id": 1,
        "sent_id": 1,
        "sentence": "the white block",
        "no_target": False,
        "instances": [instance],
    }
    return datasets.Dataset.from_list([{k: row[k] for k in features}], features=features)


def test_dataset_rows_are_upright_and_stored_annotations_keep_the_stored_pixels():
    upright = load_row_image(without_image_decoding(_rows(DISPLAYED))[0])
    assert is_displayed(upright)
    with pytest.warns(
        UserWarning, match="its masks are 60 x 40, the stored size; EXIF orientation not applied"
    ):
        stored = load_row_image(without_image_decoding(_rows(STORED))[0])
    assert stored.size == STORED


def test_the_pipeline_turns_a_path_upright_and_says_a_pil_image_is_used_as_stored(tmp_path):
    from transformers import pipeline

    import refseg  # noqa: F401
    from tests.processing_helpers import save_tiny_instalign

    segmenter = pipeline("referring-segmentation", model=str(save_tiny_instalign(tmp_path / "model")))
    (tmp_path / "portrait.jpg").write_bytes(phone_jpeg())
    for source in (tmp_path / "portrait.jpg", phone_jpeg(), data_url(phone_jpeg())):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert segmenter(source, "the red circle")["mask"].size == DISPLAYED
        assert not [w for w in caught if "EXIF" in str(w.message)]  # nothing to say: refseg decoded it
    opened = PIL.Image.open(tmp_path / "portrait.jpg")
    with pytest.warns(UserWarning, match="EXIF Orientation=6 and is segmented as stored"):
        assert segmenter(opened, "the red circle")["mask"].size == STORED
