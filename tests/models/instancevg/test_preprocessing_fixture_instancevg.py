"""Pre-processing parity with the ORIGINAL InstanceVG test pipeline, checked without it.

``tests/fixtures/instancevg/preprocessing_reference.npz`` was written by
``scripts/parity/instancevg_parity.py --mode preprocessing --fixture ...``: image files (odd sizes; PNG, JPEG, grey,
RGBA, 16-bit) generated deterministically, what the original's own decode / ``Resize`` / ``Normalize`` made of them
(the resized 8-bit image and normalised values at pixels covering every row and column), a small Unigram
sentencepiece model and the token ids the original's loader computed with it (transformers 4.44.2).
"""

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from refseg.image_utils import load_image
from refseg.models.instancevg import InstanceVGImageProcessor
from refseg.models.instancevg.processing_instancevg import clean_expression, tokenizer_from_sentencepiece

FIXTURE = Path(__file__).parents[2] / "fixtures" / "instancevg" / "preprocessing_reference.npz"
pytest.importorskip("cv2", reason="the exact pre-processing needs opencv-python-headless (the test extra)")


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _cases(reference):
    return sorted({k.split("/")[0] for k in reference if k.endswith("/file")})


def _pixels(reference, name, tmp_path, backend="opencv"):
    suffix = ".jpg" if "jpeg" in name else ".png"
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(reference[f"{name}/file"].tobytes())
    size = int(reference["size"])
    processor = InstanceVGImageProcessor(size=size, resample_backend=backend)
    return processor(load_image(path))["pixel_values"][0].permute(1, 2, 0).numpy()  # (S, S, 3) RGB


def test_fixture_covers_the_odd_sizes_and_decoder_branches(reference):
    names = _cases(reference)
    assert {
        "333x517_png",
        "517x333_jpeg",
        "1024x77_jpeg",
        "241x199_grey",
        "97x211_rgba",
        "123x321_png16",
    } <= set(names)


@pytest.mark.parametrize(
    "name", ["333x517_png", "517x333_jpeg", "1024x77_jpeg", "241x199_grey", "97x211_rgba", "123x321_png16"]
)
def test_pixel_values_equal_the_original_test_pipeline(reference, name, tmp_path):
    ours = _pixels(reference, name, tmp_path)
    mean, std = reference["mean"], reference["std"]
    levels = np.asarray(PIL.Image.open(io.BytesIO(reference[f"{name}/levels_png"].tobytes())))
    # the original's resized 8-bit image, everywhere, recovered from our normalised values
    assert np.array_equal(np.round(ours * std + mean), levels.astype(np.float64))
    rows, cols = reference["rows"], reference["cols"]
    np.testing.assert_allclose(ours[rows, cols], reference[f"{name}/normalised_at"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours, (levels.astype(np.float32) - mean) / std, rtol=0, atol=1e-5)


def test_the_torch_backend_is_only_within_one_grey_level(reference, tmp_path):
    name = "333x517_png"
    levels = np.asarray(PIL.Image.open(io.BytesIO(reference[f"{name}/levels_png"].tobytes()))).astype(int)
    ours = _pixels(reference, name, tmp_path, backend="torch")
    ours_levels = np.round(ours * reference["std"] + reference["mean"]).astype(int)
    assert np.abs(ours_levels - levels).max() == 1  # why the exact path uses OpenCV


@pytest.mark.parametrize("max_token", [50, 20])
def test_token_ids_equal_the_original_loader(reference, max_token, tmp_path):
    spm = tmp_path / "beit3.spm"
    spm.write_bytes(reference["tokens/spm"].tobytes())
    tokenizer = tokenizer_from_sentencepiece(spm, model_max_length=max_token)
    for i, sentence in enumerate(reference["sentences"].tolist()):
        ours = tokenizer(
            clean_expression(sentence), truncation=True, padding="max_length", max_length=max_token
        )
        assert ours["input_ids"] == reference[f"tokens/{max_token}/ids"][i].tolist(), sentence
        padding = reference[f"tokens/{max_token}/padding"][i]
        assert ours["attention_mask"] == (1 - padding).tolist(), sentence
    assert reference[f"tokens/{max_token}/ids"][:, -1].tolist().count(2) >= 1  # one sentence is truncated


def test_default_backend_is_opencv_and_is_saved(tmp_path):
    processor = InstanceVGImageProcessor(size=8)
    assert processor.resample_backend == "opencv"
    processor.save_pretrained(tmp_path)
    assert InstanceVGImageProcessor.from_pretrained(tmp_path).resample_backend == "opencv"
    torch_processor = InstanceVGImageProcessor(size=8, resample_backend="torch")
    torch_processor.save_pretrained(tmp_path / "t")
    assert InstanceVGImageProcessor.from_pretrained(tmp_path / "t").resample_backend == "torch"
    with pytest.raises(ValueError, match="resample_backend"):
        InstanceVGImageProcessor(resample_backend="pillow")
