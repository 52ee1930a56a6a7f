"""refseg.image_utils: loading images by path with errors that name the file, and the URL timeout."""

import io

import numpy as np
import PIL.Image
import pytest

from refseg.image_utils import ImageFileError, load_image, make_list_of_images, to_chw_float


def test_load_image_keeps_16_bit_pixels(tmp_path):
    values = np.array([[0, 30000], [60000, 65535]], dtype=np.uint16)
    PIL.Image.fromarray(values).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    assert image.mode.startswith("I")
    np.testing.assert_allclose(to_chw_float(image)[0].numpy(), values / 65535, atol=1e-6)


def test_truncated_and_non_image_files_name_the_file(tmp_path):
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageFileError, match=f"cannot read image file {tmp_path}/cut.png"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match="cannot read image file .*text.jpg"):
        load_image(str(tmp_path / "text.jpg"))


def test_missing_paths_and_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^no such image file: {tmp_path}/a.png$"):
        load_image(str(tmp_path / "a.png"))
    with pytest.raises(FileNotFoundError, match="no such image file: .* \\(it is a directory\\)"):
        load_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such image file: aGVsbG8="):  # not a base64 error
        load_image("aGVsbG8=")


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5"])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        load_image("https://example.com/a.png", timeout=timeout)


def test_a_batch_array_splits_but_5_dims_are_refused():
    assert len(make_list_of_images(np.zeros((2, 4, 4, 3), np.uint8))) == 2
    with pytest.raises(ValueError, match="5 dimensions"):
        make_list_of_images(np.zeros((1, 2, 4, 4, 3), np.uint8))


def test_bad_data_urls_dicts_and_types_get_one_line_each():
    with pytest.raises(
        ImageFileError, match="^cannot read image data:image/png;base64: a data: URL needs a comma"
    ):
        load_image("data:image/png;base64")
    with pytest.raises(ImageFileError, match="the data: URL is not valid base64"):
        load_image("data:image/png;base64,@@@@")
    with pytest.raises(ValueError, match="an image dict needs 'bytes' or 'path', got keys \\['other'\\]"):
        load_image({"other": 1})
    with pytest.raises(ValueError, match="an image must be a path, a URL, .* got int"):
        load_image(3)


def test_a_datasets_value_without_bytes_reads_its_path(tmp_path):
    PIL.Image.new("RGB", (5, 3)).save(tmp_path / "a.png")
    assert load_image({"bytes": None, "path": str(tmp_path / "a.png")}).size == (5, 3)
