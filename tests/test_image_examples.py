"""examples/train.py and examples/evaluate.py decode dataset rows with refseg's loader: upright, allow-listed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import datasets
import pytest
import torch

from refseg.data.images import without_image_decoding
from refseg.data.schema import referring_features
from refseg.image_utils import ImageFileError
from refseg.models.instalign.image_processing_instalign import InstAlignImageProcessor
from refseg.models.instalign.processing_instalign import InstAlignProcessor
from tests.image_helpers import DISPLAYED, EPS, install_fake_gs, phone_jpeg
from tests.processing_helpers import tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"refseg_{name}_images", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dataset(image_bytes: bytes, mask_size: tuple[int, int] = DISPLAYED) -> datasets.Dataset:
    """Two rows of the refseg schema holding ``image_bytes``, each with one full-image instance mask."""
    from refseg.data.masks import encode_mask

    mask = torch.ones((mask_size[1], mask_size[0]), dtype=torch.uint8).numpy()
    instance = {
        "ann_id": 1,
        "category_id": 1,
        "bbox": [0.0, 0.0, 4.0, 4.0],
        "segmentation": encode_mask(mask),
    }
    rows = [
        {
            "image": {"bytes": image_bytes, "path": "photo.png"},
            "image_id": k,
            "ref_id": k,
            "sent_id": k,
            "sentence": "the red circle",
            "no_target": False,
            "instances": [instance],
        }
        for k in range(2)
    ]
    return without_image_decoding(datasets.Dataset.from_list(rows, features=referring_features()))


def _processor() -> InstAlignProcessor:
    return InstAlignProcessor(InstAlignImageProcessor(size=16), tiny_tokenizer())


def test_train_collator_decodes_rows_upright():
    train = _script("train")
    rows = [_dataset(phone_jpeg())[k] for k in range(2)]
    batch = train.TrainCollator(_processor(), max_text_length=8)(rows)
    from refseg.image_utils import load_image

    expected = _processor()(images=[load_image(phone_jpeg())] * 2, text=["the red circle"] * 2)[
        "pixel_values"
    ]
    assert torch.equal(batch["pixel_values"], expected)
    assert [tuple(m.shape) for m in batch["mask_labels"]] == [(1, 16, 16)] * 2


def test_evaluate_batch_images_are_upright():
    evaluate = _script("evaluate")
    ds = _dataset(phone_jpeg())
    images = evaluate.batch_images(next(ds.iter(batch_size=2)))
    assert [im.size for im in images] == [DISPLAYED] * 2 and all(im.mode == "RGB" for im in images)


def test_an_eps_row_is_refused_without_ghostscript(tmp_path, monkeypatch):
    log = install_fake_gs(tmp_path, monkeypatch)
    ds = _dataset(EPS)
    with pytest.raises(ImageFileError, match="image bytes of photo.png: not an image in an allowed format"):
        _script("train").TrainCollator(_processor(), max_text_length=8)([ds[0], ds[1]])
    with pytest.raises(ImageFileError, match="PostScript/EPS"):
        _script("evaluate").batch_images(next(ds.iter(batch_size=2)))
    assert not log.exists()
