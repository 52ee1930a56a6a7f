"""InstAlignImageProcessor: input types, resize/normalise values, mask labels, errors, save/load."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from refseg.data import encode_mask
from refseg.models.instalign import InstAlignImageProcessor

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def test_defaults_are_the_paper_480_square_and_imagenet_stats():
    p = InstAlignImageProcessor()
    assert p.size == {"height": 480, "width": 480}
    assert p.image_mean == [0.485, 0.456, 0.406] and p.image_std == [0.229, 0.224, 0.225]


def test_constant_image_is_rescaled_and_normalised_exactly():
    p = InstAlignImageProcessor(size=8)
    image = np.full((5, 7, 3), 51, dtype=np.uint8)  # 51 / 255 = 0.2
    out = p(image)["pixel_values"]
    assert out.shape == (1, 3, 8, 8) and out.dtype == torch.float32
    expected = ((0.2 - MEAN) / STD).expand(3, 8, 8)
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=0)


def test_pil_numpy_and_torch_inputs_agree():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    p = InstAlignImageProcessor(size={"height": 16, "width": 8})
    from_np = p(array)["pixel_values"]
    from_pil = p(PIL.Image.fromarray(array))["pixel_values"]
    from_torch = p(torch.from_numpy(array).permute(2, 0, 1))["pixel_values"]
    from_float = p(array.astype(np.float32) / 255)["pixel_values"]
    assert from_np.shape == (1, 3, 16, 8)
    torch.testing.assert_close(from_pil, from_np)
    torch.testing.assert_close(from_torch, from_np)
    torch.testing.assert_close(from_float, from_np, atol=1e-5, rtol=0)


def test_batches_lists_and_4d_arrays_grayscale_and_rgba():
    p = InstAlignImageProcessor(size=4)
    gray = np.zeros((6, 6), dtype=np.uint8)
    rgba = np.zeros((6, 9, 4), dtype=np.uint8)
    assert p([gray, rgba, PIL.Image.new("L", (3, 3))])["pixel_values"].shape == (3, 3, 4, 4)
    assert p(np.zeros((2, 6, 6, 3), dtype=np.uint8))["pixel_values"].shape == (2, 3, 4, 4)
    assert p(torch.zeros(5, 3, 6, 6, dtype=torch.uint8))["pixel_values"].shape == (5, 3, 4, 4)


def test_no_resize_keeps_size_and_refuses_mixed_sizes():
    p = InstAlignImageProcessor(do_resize=False, do_normalize=False)
    out = p(np.full((3, 5, 3), 255, dtype=np.uint8))["pixel_values"]
    assert out.shape == (1, 3, 3, 5) and torch.all(out == 1.0)
    with pytest.raises(ValueError, match="different sizes"):
        p([np.zeros((3, 5, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((6, 6, 2), np.uint8), "channels-last"),
        (torch.zeros(6, 6, 3), "channels-first"),
        (np.zeros((1, 1, 6, 6, 3), np.uint8), "shape"),
        ("not an image", "unsupported"),
        ([], "empty"),
        ([np.zeros((4, 4, 3), np.uint8), 3], "image 1"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        InstAlignImageProcessor(size=4)(bad)


def test_mask_labels_from_rle_instances_nearest_resize():
    p = InstAlignImageProcessor(size=4)
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4, :4] = True  # top-left quadrant -> top-left 2x2 at 4x4
    other = np.zeros((8, 8), dtype=bool)
    other[4:, 4:] = True
    rows = [[{"ann_id": 1, "segmentation": encode_mask(mask)}, encode_mask(other)], []]
    out = p([np.zeros((8, 8, 3), np.uint8)] * 2, instances=rows)
    labels = out["mask_labels"]
    assert len(labels) == 2
    assert labels[0].shape == (2, 4, 4) and labels[0].dtype == torch.float32
    expected0 = torch.zeros(4, 4)
    expected0[:2, :2] = 1
    expected1 = torch.zeros(4, 4)
    expected1[2:, 2:] = 1
    torch.testing.assert_close(labels[0][0], expected0)
    torch.testing.assert_close(labels[0][1], expected1)
    assert labels[1].shape == (0, 4, 4)  # no-target sample


def test_mask_label_errors():
    p = InstAlignImageProcessor(size=4)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="1 images but 2 instance lists"):
        p(image, instances=[[], []])
    with pytest.raises(ValueError, match="size"):
        p(image, instances=[[np.ones((4, 4))]])
    with pytest.raises(ValueError, match="instances\\[0\\] must be a list"):
        p(image, instances=[{"segmentation": encode_mask(np.ones((8, 8)))}])


def test_save_and_load_round_trip(tmp_path):
    p = InstAlignImageProcessor(size={"height": 64, "width": 32}, image_mean=[0.5, 0.5, 0.5])
    p.save_pretrained(tmp_path)
    q = InstAlignImageProcessor.from_pretrained(tmp_path)
    assert q.size == {"height": 64, "width": 32} and q.image_mean == [0.5, 0.5, 0.5]
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    torch.testing.assert_close(p(image)["pixel_values"], q(image)["pixel_values"])


def _raw(image):
    """Pixels in [0, 1] as the processor sees them (no resize, no normalisation), channel 0."""
    return InstAlignImageProcessor(do_resize=False, do_normalize=False)(image)["pixel_values"][0, 0]


def test_16_bit_images_are_scaled_by_65535_not_clipped(recwarn):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    expected = torch.from_numpy(values.astype(np.float32) / 65535)
    pil16 = PIL.Image.fromarray(values)  # mode I;16
    assert pil16.mode == "I;16"
    for image in (values, pil16, torch.from_numpy(values.astype(np.int32)).to(torch.uint16)):
        torch.testing.assert_close(_raw(image), expected, atol=1e-6, rtol=0)
    big_endian = PIL.Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    torch.testing.assert_close(_raw(big_endian), expected, atol=1e-6, rtol=0)
    assert not recwarn.list  # uint16 states its range: no guess, no warning


def test_32_bit_integer_images_guess_their_range_with_a_warning():
    values = np.array([[0, 300], [4000, 50000]], dtype=np.int32)
    with pytest.warns(UserWarning, match=r"values in \[0, 50000\]: taking its range as \[0, 65535\]"):
        out = _raw(PIL.Image.fromarray(values, mode="I"))
    torch.testing.assert_close(out, torch.from_numpy(values / 65535).float(), atol=1e-6, rtol=0)
    with pytest.warns(UserWarning, match=r"taking its range as \[0, 255\]"):
        out = _raw(np.array([[0, 51]], dtype=np.int64))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.2]]), atol=1e-6, rtol=0)


def test_float_images_in_0_1_are_kept_others_scaled_with_a_warning(recwarn):
    unit = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    torch.testing.assert_close(_raw(PIL.Image.fromarray(unit, mode="F")), torch.from_numpy(unit))
    torch.testing.assert_close(_raw(torch.from_numpy(unit)), torch.from_numpy(unit))
    assert not recwarn.list
    with pytest.warns(UserWarning, match=r"taking its range as \[0, 255\]"):
        out = _raw(unit * 200)  # 0..200: an 8-bit image stored as floats
    torch.testing.assert_close(out, torch.from_numpy(unit * 200 / 255))
    with pytest.warns(UserWarning, match="scaling its minimum to 0 and its maximum to 1"):
        out = _raw(PIL.Image.fromarray(unit * 1000 - 100, mode="F"))  # -100..900: min-max, never clipped
    torch.testing.assert_close(out, torch.from_numpy(unit), atol=1e-6, rtol=0)


def test_bool_images_are_black_and_white():
    image = np.array([[True, False]])
    torch.testing.assert_close(_raw(image), torch.tensor([[1.0, 0.0]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused(bad):
    image = np.zeros((4, 4, 3), np.float32)
    image[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite pixel values"):
        InstAlignImageProcessor(size=4)(image)
    with pytest.raises(ValueError, match="NaN or infinite pixel values"):
        InstAlignImageProcessor(size=4)(torch.from_numpy(image).permute(2, 0, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size height must be a positive number of pixels, got 0"),
        ({"size": {"height": 8, "width": -4}}, "size width must be a positive"),
        ({"size": 2.5}, "size must be an int"),
        ({"image_std": [0.2, 0.0, 0.2]}, "image_std must not contain 0"),
        ({"image_std": 0.0}, "image_std must not contain 0"),
        ({"image_mean": [0.5, 0.5]}, "image_mean must have 3 values"),
        ({"image_std": [0.2] * 4}, "image_std must have 3 values"),
        ({"image_mean": [0.5, float("nan"), 0.5]}, "image_mean must be finite"),
        ({"rescale_factor": 0}, "rescale_factor must be a positive finite number"),
    ],
)
def test_bad_settings_are_refused_when_built_and_per_call(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        InstAlignImageProcessor(**kwargs)
    with pytest.raises(ValueError, match=message):
        InstAlignImageProcessor(size=4)(np.zeros((4, 4, 3), np.uint8), **kwargs)
    # a saved configuration with the bad value fails when it is loaded, not at the first call
    InstAlignImageProcessor(size=4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config.update(kwargs)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        InstAlignImageProcessor.from_pretrained(tmp_path)
