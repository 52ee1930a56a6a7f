"""The synthetic demo model on a photo: detected and explained, not on synthetic scenes or other models."""

import numpy as np
import PIL.Image
import pytest

import refseg
from refseg.data import synthetic_scenes, synthetic_tokenizer
from refseg.demo_notice import demo_model_notice, is_synthetic_model, looks_synthetic
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign, tiny_tokenizer


def _photo_like(size=(200, 150), seed=0) -> PIL.Image.Image:
    """Smooth colour gradients plus texture at every scale up to 1/8 of the picture, as in a photo."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    noisy = np.stack([120 + 80 * np.sin(6 * x), 100 + 60 * np.cos(5 * y), 90 + 50 * x * y], -1)
    for cell in (1, 2, 4, 8):
        grain = rng.normal(0, 8, (h // cell + 1, w // cell + 1, 3))
        noisy = noisy + np.repeat(np.repeat(grain, cell, 0), cell, 1)[:h, :w]
    return PIL.Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def test_synthetic_scenes_look_synthetic_and_photos_do_not():
    scenes = synthetic_scenes(num_images=3, seed=5, image_size=96, sentences_per_image=1)
    assert all(looks_synthetic(row["image"]) for row in scenes)
    assert looks_synthetic(PIL.Image.new("RGB", (300, 200), (30, 140, 60)))
    assert not looks_synthetic(_photo_like())
    assert not looks_synthetic(_photo_like((640, 480), seed=1))


def test_synthetic_model_detection():
    assert is_synthetic_model(refseg.demo_model_path())
    assert is_synthetic_model("/some/other/folder", synthetic_tokenizer())
    assert not is_synthetic_model("/some/other/folder", tiny_tokenizer())  # knows "a", not a grammar word
    assert not is_synthetic_model(None, None)


def test_notice_only_for_a_synthetic_model_on_a_photo():
    tok = synthetic_tokenizer()
    notice = demo_model_notice("elsewhere", tok, _photo_like())
    assert notice is not None and "only knows synthetic scenes" in notice
    assert "refseg convert instancevg" in notice and "docs/models/instancevg.md" in notice
    assert demo_model_notice("elsewhere", tok, PIL.Image.new("RGB", (64, 64), (128, 128, 128))) is None
    assert demo_model_notice("elsewhere", tiny_tokenizer(), _photo_like()) is None


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_notice")))


def test_predict_says_the_demo_model_only_knows_synthetic_scenes(model_dir, tmp_path, capsys):
    photo, flat = tmp_path / "photo.jpg", tmp_path / "flat.png"
    _photo_like().save(photo)
    PIL.Image.new("RGB", (64, 64), (128, 128, 128)).save(flat)
    assert main(["predict", "--image", str(photo), "--text", "the red circle", "--model", model_dir]) == 0
    printed = capsys.readouterr().out
    assert "only knows synthetic scenes" in printed and "refseg convert instancevg" in printed
    assert main(["predict", "--image", str(flat), "--text", "the red circle", "--model", model_dir]) == 0
    assert "only knows synthetic scenes" not in capsys.readouterr().out
