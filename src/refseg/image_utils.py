"""Image inputs shared by every refseg image processor and the pipeline: loading, checking, scaling.

``load_image`` opens a path or URL (with a timeout) and names the file in every error.
``to_chw_float`` turns one PIL image, numpy array or torch tensor into a float32 ``(3, H, W)`` tensor
with values in [0, 1], scaling each pixel type by its real range:

| input | scaled by |
|---|---|
| 8-bit (``uint8``, PIL ``L``/``RGB``/``RGBA``/``P``/...) | ``rescale_factor`` (1/255) |
| 16-bit (``uint16``, PIL ``I;16``) | 1/65535 (``rescale_factor * 255 / 65535``) |
| other integers (``int32``, PIL ``I``, ...) | the smallest of 255, 65535, 2**32 - 1 that holds the values, with a warning |
| floats (``float*``, PIL ``F``) in [0, 1] | 1 (taken as they are) |
| floats in [0, 255] with values above 1 | 1/255, with a warning |
| any values outside these ranges (negative, larger) | min-max to [0, 1], with a warning |

Nothing is clipped; non-finite pixels are refused. See ``docs/pipeline.md`` ("Inputs").
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

__all__ = [
    "DEFAULT_URL_TIMEOUT",
    "ImageFileError",
    "check_single_image",
    "image_size",
    "is_single_image",
    "load_image",
    "make_list_of_images",
    "to_chw_float",
]

DEFAULT_URL_TIMEOUT = 30.0
"""Seconds to wait for an image URL when no timeout is given (pipeline and ``refseg predict``)."""


class ImageFileError(ValueError):
    """An image file or URL that exists but cannot be read as an image; the message names it."""


def load_image(source: str | os.PathLike, timeout: float | None = DEFAULT_URL_TIMEOUT) -> PIL.Image.Image:
    """Open an image from a local path, an ``http(s)://`` URL or a ``data:image/...;base64,`` string.

    Raises:
        FileNotFoundError: ``"no such image file: PATH"`` for a missing path or a directory.
        ImageFileError: the file or URL content is not a readable image (the message names it).
        ValueError: ``timeout`` is not a positive finite number.
    """
    if timeout is not None and not (
        isinstance(timeout, int | float) and np.isfinite(timeout) and timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    text = os.fspath(source)
    if text.startswith(("http://", "https://", "data:image/")):
        from transformers.image_utils import load_image as hf_load_image

        shown = text if len(text) < 200 else text[:200] + "..."
        try:
            image = hf_load_image(text, timeout=timeout)
        except Exception as err:
            raise ImageFileError(f"cannot read image {shown}: {_one_line(err)}") from err
        return image
    path = Path(text).expanduser()
    if not path.is_file():
        what = " (it is a directory)" if path.is_dir() else ""
        raise FileNotFoundError(f"no such image file: {text}{what}")
    try:
        with PIL.Image.open(path) as opened:
            opened.load()  # decode now, so that truncated files fail here and name the file
            image = opened.copy() if opened.mode != "P" else opened.convert("RGBA")
    except (OSError, PIL.Image.DecompressionBombError, ValueError, SyntaxError) as err:
        raise ImageFileError(f"cannot read image file {text}: {_one_line(err)}") from err
    return image


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def is_single_image(image: Any) -> bool:
    """True for a PIL image or a 2-D / 3-D numpy array or torch tensor."""
    if isinstance(image, PIL.Image.Image):
        return True
    if isinstance(image, np.ndarray | torch.Tensor):
        return image.ndim in (2, 3)
    return False


def check_single_image(image: Any, what: str = "image") -> None:
    """Raise ``ValueError`` unless ``image`` is a PIL image or a 2-D / 3-D array or tensor."""
    if isinstance(image, np.ndarray | torch.Tensor) and image.ndim not in (2, 3):
        layout = "(H, W, C) or (H, W)" if isinstance(image, np.ndarray) else "(C, H, W) or (H, W)"
        raise ValueError(
            f"{what} must be a {layout} array, got {image.ndim} dimensions of shape {tuple(image.shape)}; "
            "pass a list of images for several"
        )
    if not is_single_image(image):
        raise ValueError(
            f"{what} must be a PIL image, a numpy array or a torch tensor, got {type(image).__name__}"
        )


def make_list_of_images(images: Any) -> list[Any]:
    """One image (PIL, 2-D / 3-D array or tensor) or a batch (list, 4-D array or tensor) -> list of images."""
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray | torch.Tensor):
        if images.ndim == 4:
            return list(images)
        raise ValueError(
            f"expected an image or a batch of images, got an array of shape {tuple(images.shape)} "
            f"({images.ndim} dimensions)"
        )
    if isinstance(images, list | tuple):
        if len(images) == 0:
            raise ValueError("got an empty list of images")
        for i, image in enumerate(images):
            if not is_single_image(image):
                shape = getattr(image, "shape", None)
                raise ValueError(
                    f"image {i} is not a PIL image, an (H, W, C) numpy array or a (C, H, W) tensor "
                    f"(got {type(image).__name__}{'' if shape is None else f' of shape {tuple(shape)}'})"
                )
        return list(images)
    raise ValueError(
        f"unsupported images of type {type(images).__name__}; pass a PIL image, a numpy array, "
        "a torch tensor or a list of them"
    )


def image_size(image: Any) -> tuple[int, int]:
    """``(height, width)`` of one image in its own layout (PIL, (H, W[, C]) array, ([C,] H, W) tensor)."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    return int(image.shape[-2]), int(image.shape[-1])


def _pil_to_array(image: PIL.Image.Image) -> np.ndarray:
    """PIL -> numpy keeping the real pixel type: ``I;16*`` uint16, ``I`` int32, ``F`` float32, other modes RGB uint8."""
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # native byte order for I;16B / I;16L
    if image.mode in ("I", "F"):
        return np.array(image)
    try:  # 8-bit modes, and whatever else PIL can turn into RGB
        return np.array(image.convert("RGB"))
    except ValueError as err:
        raise ValueError(f"unsupported PIL image mode {image.mode!r}: {err}") from err


def _integer_range(tensor: torch.Tensor, dtype_name: str) -> float:
    """The value that maps to 1 for an integer image whose type does not say its range."""
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0:
        return 0.0  # min-max
    for limit in (255, 65535, 2**32 - 1):
        if high <= limit:
            warnings.warn(
                f"{dtype_name} image with values in [{low}, {high}]: taking its range as [0, {limit}]; "
                "pass a uint8 or uint16 image to avoid this guess",
                UserWarning,
                stacklevel=4,
            )
            return float(limit)
    return 0.0


def _scale_to_unit(tensor: torch.Tensor, rescale_factor: float, dtype_name: str) -> torch.Tensor:
    """Map pixel values of any type to [0, 1] by their real range (module docstring table)."""
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) * rescale_factor
    if tensor.dtype == torch.uint16:
        return tensor.to(torch.float32) * (rescale_factor * 255.0 / 65535.0)
    if not torch.is_floating_point(tensor):
        limit = _integer_range(tensor, dtype_name)
        values = tensor.to(torch.float64)
        if limit > 0:
            return (values * (rescale_factor * 255.0 / limit)).to(torch.float32)
        return _min_max(values, dtype_name)
    values = tensor.to(torch.float32)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values
    if low >= 0.0 and high <= 255.0:
        warnings.warn(
            f"{dtype_name} image with values in [{low:g}, {high:g}]: taking its range as [0, 255]; "
            "pass floats in [0, 1] or a uint8 image to avoid this guess",
            UserWarning,
            stacklevel=4,
        )
        return values / 255.0
    return _min_max(values, dtype_name)


def _min_max(values: torch.Tensor, dtype_name: str) -> torch.Tensor:
    low, high = float(values.min()), float(values.max())
    warnings.warn(
        f"{dtype_name} image with values in [{low:g}, {high:g}] outside any standard pixel range: "
        "scaling its minimum to 0 and its maximum to 1",
        UserWarning,
        stacklevel=4,
    )
    span = high - low
    out = (values - low) / span if span > 0 else torch.zeros_like(values)
    return out.to(torch.float32)


def to_chw_float(image: Any, rescale_factor: float = 1 / 255, do_rescale: bool = True) -> torch.Tensor:
    """One image -> float32 ``(3, H, W)`` tensor, in [0, 1] when ``do_rescale`` (see the module docstring).

    PIL images keep their pixel type (16-bit and float modes are not clipped to 8 bits). Numpy
    arrays are ``(H, W, C)`` or ``(H, W)``; torch tensors ``(C, H, W)`` or ``(H, W)``; ``C`` is 1, 3 or 4
    (one channel is repeated, alpha is dropped). With ``do_rescale=False`` the values are only cast.

    Raises:
        ValueError: wrong number of dimensions or channels, an empty image, or NaN / infinite pixels.
    """
    check_single_image(image)
    if isinstance(image, PIL.Image.Image):
        array = _pil_to_array(image)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        dtype_name = f"PIL mode {image.mode!r}"
    elif isinstance(image, np.ndarray):
        array = image[:, :, None] if image.ndim == 2 else image
        if array.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"a numpy image must be channels-last (H, W, C) with C in (1, 3, 4), got shape {image.shape}"
            )
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        elif array.dtype.kind not in "uif":
            raise ValueError(f"unsupported numpy image dtype {array.dtype}")
        elif array.dtype.byteorder == ">" or array.dtype in (np.uint32, np.uint64):
            array = array.astype(array.dtype.newbyteorder("=") if array.dtype.kind == "f" else np.int64)
        array = np.ascontiguousarray(array)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1)
        dtype_name = f"numpy {image.dtype}"
    else:
        tensor = image.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"a torch image must be channels-first (C, H, W) with C in (1, 3, 4), got shape {tuple(image.shape)}"
            )
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8) * 255
        elif tensor.is_complex():
            raise ValueError(f"unsupported torch image dtype {tensor.dtype}")
        elif tensor.dtype in (torch.uint32, torch.uint64):
            tensor = tensor.to(torch.int64)
        dtype_name = f"torch {image.dtype}"
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"image has an empty spatial size {tuple(tensor.shape[1:])}")
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"the {dtype_name} image has NaN or infinite pixel values")
    if not do_rescale:
        return tensor.to(torch.float32)
    return _scale_to_unit(tensor, rescale_factor, dtype_name).contiguous()
