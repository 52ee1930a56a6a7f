"""Image inputs shared by every refseg image processor and the pipeline: loading, checking, scaling.

``load_image`` is the one place refseg decodes an image (paths, ``http(s)://`` and ``data:`` URLs, bytes,
``datasets`` image values, app uploads): only :data:`IMAGE_FORMATS` (never EPS/PostScript or PDF), the
pixel cap checked from the header before decoding (:func:`max_image_pixels`), EXIF orientation applied,
URLs within a total deadline and a size cap; every error is one line naming the source.
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

import base64
import binascii
import io
import os
import struct
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from .error_messages import one_line

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_URL_TIMEOUT",
    "IMAGE_FORMATS",
    "ImageFileError",
    "ImageTooLargeError",
    "check_image_input",
    "check_image_pixels",
    "exif_orientation",
    "exif_upright",
    "check_single_image",
    "image_size",
    "is_single_image",
    "load_image",
    "make_list_of_images",
    "max_image_bytes",
    "max_image_pixels",
    "resize_to_chw_float",
    "to_chw_float",
]

DEFAULT_URL_TIMEOUT = 30.0
"""Seconds allowed for the whole download of an image URL when no timeout is given (pipeline, ``refseg predict``)."""

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
"""The raster formats refseg decodes (Pillow format names), recognised by content whatever the file name.
Anything else is refused before decoding: in particular EPS / PostScript (Pillow decodes it by running
Ghostscript) and PDF. ``JPEG`` covers the MPO files of phone cameras."""

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Largest ``width * height`` decoded by default (Pillow's own warning limit, about 89.5 MP, e.g. 10,000 x 8,900).
Change it with the ``REFSEG_MAX_IMAGE_PIXELS`` environment variable or ``load_image(..., max_pixels=)``."""

DEFAULT_MAX_IMAGE_BYTES = 64 * 2**20
"""Largest image download (URL) or ``data:`` URL payload in bytes; ``REFSEG_MAX_IMAGE_BYTES`` changes it."""

MAX_PIXELS_ENV = "REFSEG_MAX_IMAGE_PIXELS"
MAX_BYTES_ENV = "REFSEG_MAX_IMAGE_BYTES"
_ORIENTATION = 0x0112  # EXIF tag


class ImageFileError(ValueError):
    """An image file or URL that exists but cannot be read as an image; the message names it."""


class ImageTooLargeError(ImageFileError):
    """An image over the pixel cap (``REFSEG_MAX_IMAGE_PIXELS``), refused before its pixels are decoded."""


def _limit_from(value: int | None, env: str, default: int) -> int:
    """``value``, else the environment variable ``env``, else ``default``; a positive integer."""
    if value is None:
        text = os.environ.get(env, "").strip().replace("_", "")
        if not text:
            return default
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(f"{env} must be a positive whole number, got {os.environ[env]!r}")
        return int(text)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"the limit must be a positive whole number, got {value!r}")
    return int(value)


def max_image_pixels(value: int | None = None) -> int:
    """The pixel cap in force: ``value``, else ``$REFSEG_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_IMAGE_PIXELS`."""
    return _limit_from(value, MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)


def max_image_bytes(value: int | None = None) -> int:
    """The download cap in force: ``value``, else ``$REFSEG_MAX_IMAGE_BYTES``, else :data:`DEFAULT_MAX_IMAGE_BYTES`."""
    return _limit_from(value, MAX_BYTES_ENV, DEFAULT_MAX_IMAGE_BYTES)


def check_image_pixels(height: int, width: int, what: str = "image", max_pixels: int | None = None) -> None:
    """Raise :class:`ImageTooLargeError` when ``height * width`` is over the pixel cap (:func:`max_image_pixels`)."""
    limit = max_image_pixels(max_pixels)
    if int(height) * int(width) > limit:
        raise ImageTooLargeError(
            f"{what} is {width} x {height} = {int(width) * int(height):,} pixels, over the limit of {limit:,} "
            f"pixels (raise it with the {MAX_PIXELS_ENV} environment variable)"
        )


def check_image_input(image: Any, what: str = "image", max_pixels: int | None = None) -> None:
    """Checks on an image given as pixels (PIL, array, tensor), before any of its pixels is read.

    Its size must be within the pixel cap (:func:`check_image_pixels`), and a PIL image the caller opened
    but has not decoded yet must be of one of :data:`IMAGE_FORMATS` (decoding an EPS file would run
    Ghostscript).

    Raises:
        ImageTooLargeError: over the pixel cap.
        ImageFileError: a lazily opened PIL image of another format.
    """
    if (
        isinstance(image, PIL.Image.Image)
        and getattr(image, "tile", None)
        and image.format not in IMAGE_FORMATS
    ):
        raise ImageFileError(
            f"{what} is a {image.format} file opened but not decoded; refseg decodes only "
            f"{', '.join(IMAGE_FORMATS)} (convert it, or call image.load() yourself if you trust the file)"
        )
    check_image_pixels(*image_size(image), what=what, max_pixels=max_pixels)


def exif_orientation(image: PIL.Image.Image) -> int:
    """The EXIF Orientation of a PIL image (1, upright, when absent or unreadable)."""
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF
        return 1
    return value if value in (1, 2, 3, 4, 5, 6, 7, 8) else 1


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | dict | PIL.Image.Image,
    timeout: float | None = DEFAULT_URL_TIMEOUT,
    *,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    apply_exif_orientation: bool = True,
) -> PIL.Image.Image:
    """The one image loader of refseg: decoded pixels in the displayed (EXIF) orientation.

    ``source`` is a local path, an ``http(s)://`` URL, a ``data:`` URL, raw bytes, a ``datasets`` image
    value (``{"bytes": ..., "path": ...}``) or a PIL image. Encoded sources are opened only as one of
    :data:`IMAGE_FORMATS`, recognised by content (never by name or media type), their size is checked
    against the pixel cap from the header before any pixel is decoded, and EXIF orientation is applied.
    A PIL image is checked against the cap, decoded if it was opened lazily, and turned upright too.
    ``timeout`` bounds a URL's whole download (seconds), ``max_bytes`` its size (default
    :func:`max_image_bytes`); ``max_pixels`` overrides the pixel cap; ``apply_exif_orientation=False``
    keeps the stored orientation.

    Raises:
        FileNotFoundError: ``"no such image file: PATH"`` for a missing path or a directory.
        ImageTooLargeError: more pixels than :func:`max_image_pixels` (a ``ValueError``).
        ImageFileError: anything else that is not a readable image of an allowed format, or a URL that
            fails (HTTP status, content type, deadline, size); one line naming the source.
        ValueError: ``timeout`` is not a positive finite number.
    """
    if timeout is not None and not (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and np.isfinite(timeout)
        and timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    image, name = _load_stored(source, timeout, max_pixels, max_bytes)
    return exif_upright(image, name) if apply_exif_orientation else image


def _load_stored(
    source: Any, timeout: float | None, max_pixels: int | None, max_bytes: int | None
) -> tuple[PIL.Image.Image, str]:
    """``(decoded image in its stored orientation, name of the source for messages)``."""
    if isinstance(source, PIL.Image.Image):
        check_image_input(source, "the PIL image", max_pixels)
        return _loaded(source, "the PIL image"), "the PIL image"
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _decode(io.BytesIO(data), f"image bytes ({len(data)} bytes)", max_pixels)
    if isinstance(source, dict):
        data, path = source.get("bytes"), source.get("path")  # a datasets.Image(decode=False) value
        if data is not None:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ValueError(f"the image's 'bytes' must be bytes, got {type(data).__name__}")
            data = bytes(data)
            name = f"image bytes of {path}" if path else f"image bytes ({len(data)} bytes)"
            return _decode(io.BytesIO(data), name, max_pixels)
        if path is None:
            raise ValueError(f"an image dict needs 'bytes' or 'path', got keys {sorted(source)}")
        source = path
    if not isinstance(source, str | os.PathLike):
        raise ValueError(
            "an image must be a path, a URL, a data: URL, bytes, a {'bytes', 'path'} dict or a PIL image, "
            f"got {type(source).__name__}"
        )
    text = os.fsdecode(os.fspath(source))
    shown = text if len(text) < 120 else text[:120] + "..."
    if text.startswith(("http://", "https://")):
        from . import url_fetch

        try:
            data, content_type = url_fetch.fetch_url(text, timeout, max_image_bytes(max_bytes))
        except url_fetch.UrlFetchError as err:
            raise ImageFileError(f"cannot read image {shown}: {err}") from None
        return _decode(io.BytesIO(data), f"image {shown} ({content_type})", max_pixels)
    if text.startswith("data:"):
        data = _data_url_bytes(text, shown, max_image_bytes(max_bytes))
        return _decode(io.BytesIO(data), f"image {shown}", max_pixels)
    path = Path(text).expanduser()
    if not path.is_file():
        what = " (it is a directory)" if path.is_dir() else ""
        raise FileNotFoundError(f"no such image file: {text}{what}")
    return _decode(path, f"image file {text}", max_pixels)


def _data_url_bytes(text: str, shown: str, max_bytes: int) -> bytes:
    """The payload of ``data:[<media type>][;base64],<data>``, size-checked before it is decoded."""
    head, comma, payload = text.partition(",")
    if not comma:
        raise ImageFileError(f"cannot read image {shown}: a data: URL needs a comma before its data")
    is_base64 = head.lower().endswith(";base64")
    if (len(payload) * 3 // 4 if is_base64 else len(payload) // 3) > max_bytes:
        raise ImageFileError(
            f"cannot read image {shown}: the data: URL holds over {max_bytes} bytes, the limit "
            f"({MAX_BYTES_ENV})"
        )
    try:
        if is_base64:
            return base64.b64decode("".join(payload.split()), validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as err:
        raise ImageFileError(
            f"cannot read image {shown}: the data: URL is not valid base64 ({err})"
        ) from None


def _sniff(head: bytes) -> str:
    """What the first bytes of a refused file look like, for the error message."""
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "PostScript/EPS, which refseg never opens (Pillow would run Ghostscript on it)"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if stripped.startswith((b"<?xml", b"<svg")):
        return "XML/SVG text"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return "no format refseg decodes"


def _head(source: Path | io.BytesIO) -> bytes:
    """The first bytes of a file or buffer (for the message about a refused file)."""
    if isinstance(source, io.BytesIO):
        return source.getvalue()[:16]
    try:
        with open(source, "rb") as fp:
            return fp.read(16)
    except OSError:
        return b""


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int | None) -> tuple[PIL.Image.Image, str]:
    """Open ``source`` as one of :data:`IMAGE_FORMATS`, check the pixel cap on the header, then decode."""
    allowed = ", ".join(IMAGE_FORMATS)
    try:
        with PIL.Image.open(source, formats=IMAGE_FORMATS) as opened:
            check_image_pixels(opened.height, opened.width, name, max_pixels)
            image = _loaded(opened, name)
    except PIL.UnidentifiedImageError:
        raise ImageFileError(
            f"cannot read {name}: not an image in an allowed format ({allowed}); it looks like {_sniff(_head(source))}"
        ) from None
    except (
        PIL.Image.DecompressionBombError
    ) as err:  # Pillow's own hard limit, twice PIL.Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(
            f"cannot read {name}: {one_line(err)} (Pillow's limit PIL.Image.MAX_IMAGE_PIXELS applies too)"
        ) from None
    except ImageFileError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
        raise ImageFileError(f"cannot read {name}: {one_line(err)}") from None
    return image, name


def _loaded(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Decode the pixels now (truncated files fail here) and detach them from the file; ``P`` becomes ``RGBA``."""
    try:
        image.load()  # leaving Image.open's ``with`` block detaches the pixels from the file
        if image.mode == "P":
            return image.convert("RGBA")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
        raise ImageFileError(f"cannot read {name}: {one_line(err)}") from None
    return image


def exif_upright(image: PIL.Image.Image, name: str = "image") -> PIL.Image.Image:
    """``image`` in its displayed orientation: EXIF Orientation 2-8 applied (the tag is then removed)."""
    if exif_orientation(image) == 1:
        return image
    try:
        return PIL.ImageOps.exif_transpose(image)
    except Exception as err:  # noqa: BLE001 - a broken EXIF block: the pixels are still the image
        warnings.warn(f"{name}: EXIF orientation not applied ({one_line(err)})", UserWarning, stacklevel=3)
        return image


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


_BAND_MODES = {"RGB": (0, 1, 2), "RGBA": (0, 1, 2), "RGBX": (0, 1, 2), "L": (0, 0, 0)}


def _writable(plane: np.ndarray) -> np.ndarray:
    """``plane`` itself when torch can wrap it, else a contiguous writable copy of this one channel."""
    return plane if plane.flags.c_contiguous and plane.flags.writeable else plane.copy()


class _Planes:
    """The three output channels of one image, produced one at a time (each is the size of one channel).

    ``get(c)`` is channel ``c`` (an (H, W) tensor of the source pixel type); ``key(c)`` is equal for
    channels that are the same source channel (grey images), so they are converted once. ``low``,
    ``high`` and ``finite`` are statistics of the whole image, computed without a copy when needed.
    """

    def __init__(self, image: Any) -> None:
        check_single_image(image)
        self.low: float | None = None
        self.high: float | None = None
        self.finite = True
        if isinstance(image, PIL.Image.Image):
            self._from_pil(image)
        elif isinstance(image, np.ndarray):
            self._from_numpy(image)
        else:
            self._from_torch(image)
        if self.height == 0 or self.width == 0:
            raise ValueError(f"image has an empty spatial size {(self.height, self.width)}")

    def _from_pil(self, image: PIL.Image.Image) -> None:
        self.dtype_name = f"PIL mode {image.mode!r}"
        self.height, self.width = image.height, image.width
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):
            array = np.asarray(image)
            array = array.astype(np.uint16) if image.mode.startswith("I;16") else array
            self._from_numpy(array, self.dtype_name)
            return
        target = image.mode
        if (
            image.mode not in _BAND_MODES
        ):  # other 8-bit modes (P, 1, LA, CMYK, YCbCr, ...), converted per strip
            target = "L" if image.mode in ("1", "LA", "La") else "RGB"
            try:
                image.crop((0, 0, 1, 1)).convert(target)
            except ValueError as err:
                raise ValueError(f"unsupported PIL image mode {image.mode!r}: {err}") from err
        self.dtype = torch.uint8
        self._keys = _BAND_MODES[target]

        def rows(band: int, start: int, stop: int) -> torch.Tensor:
            strip = image.crop((0, start, image.width, stop)) if (start, stop) != (0, image.height) else image
            strip = strip if strip.mode == target else strip.convert(target)
            return torch.from_numpy(np.array(strip.getchannel(band)))

        self._rows = rows

    def _from_numpy(self, image: np.ndarray, dtype_name: str | None = None) -> None:
        self.dtype_name = dtype_name or f"numpy {image.dtype}"
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
        self.height, self.width = int(array.shape[0]), int(array.shape[1])
        self._keys = (0, 0, 0) if array.shape[-1] == 1 else (0, 1, 2)
        used = array[:, :, :3]
        self.dtype = torch.from_numpy(np.zeros(0, used.dtype)).dtype
        self._rows = lambda c, start, stop: torch.from_numpy(_writable(used[start:stop, :, c]))
        if used.size and used.dtype.kind == "f":
            self.finite = bool(np.isfinite(used).all())
        if used.size and self.finite and array.dtype not in (np.uint8, np.uint16):
            self.low, self.high = used.min().item(), used.max().item()

    def _from_torch(self, image: torch.Tensor) -> None:
        self.dtype_name = f"torch {image.dtype}"
        tensor = image.detach().cpu()
        tensor = tensor[None] if tensor.ndim == 2 else tensor
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
        self.height, self.width = int(tensor.shape[1]), int(tensor.shape[2])
        self._keys = (0, 0, 0) if tensor.shape[0] == 1 else (0, 1, 2)
        used = tensor[:3]
        self.dtype = used.dtype
        self._rows = lambda c, start, stop: used[c, start:stop]
        if used.numel() and torch.is_floating_point(used):
            self.finite = bool(torch.isfinite(used).all())
        if used.numel() and self.finite and used.dtype not in (torch.uint8, torch.uint16):
            self.low, self.high = used.min().item(), used.max().item()

    def key(self, c: int) -> int:
        return self._keys[c]

    def rows(self, c: int, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of output channel ``c``, ``(stop - start, W)`` in the source pixel type."""
        return self._rows(self._keys[c], start, stop)


def _integer_range(low: int, high: int, dtype_name: str) -> float:
    """The value that maps to 1 for an integer image whose type does not say its range."""
    if low < 0:
        return 0.0  # min-max
    for limit in (255, 65535, 2**32 - 1):
        if high <= limit:
            warnings.warn(
                f"{dtype_name} image with values in [{low}, {high}]: taking its range as [0, {limit}]; "
                "pass a uint8 or uint16 image to avoid this guess",
                UserWarning,
                stacklevel=5,
            )
            return float(limit)
    return 0.0


def _min_max_warning(low: float, high: float, dtype_name: str) -> None:
    warnings.warn(
        f"{dtype_name} image with values in [{low:g}, {high:g}] outside any standard pixel range: "
        "scaling its minimum to 0 and its maximum to 1",
        UserWarning,
        stacklevel=5,
    )


def _scaler(planes: _Planes, rescale_factor: float) -> Any:
    """``f(channel) -> float32`` mapping pixel values to [0, 1] by the image's real range (module docstring)."""
    dtype, name = planes.dtype, planes.dtype_name
    if dtype == torch.uint8:
        return lambda x: x.to(torch.float32).mul_(rescale_factor)
    if dtype == torch.uint16:
        return lambda x: x.to(torch.float32).mul_(rescale_factor * 255.0 / 65535.0)
    if not dtype.is_floating_point:
        low, high = int(planes.low), int(planes.high)
        limit = _integer_range(low, high, name)
        if limit > 0:
            factor = rescale_factor * 255.0 / limit
            return lambda x: x.to(torch.float64).mul_(factor).to(torch.float32)
        _min_max_warning(low, high, name)
        return _min_max(float(low), float(high - low) if high > low else 0.0, torch.float64)
    low = float(torch.tensor(planes.low).to(torch.float32))  # the statistics of the float32 values
    high = float(torch.tensor(planes.high).to(torch.float32))
    if low >= 0.0 and high <= 1.0:
        return lambda x: x.to(torch.float32)
    if low >= 0.0 and high <= 255.0:
        warnings.warn(
            f"{name} image with values in [{low:g}, {high:g}]: taking its range as [0, 255]; "
            "pass floats in [0, 1] or a uint8 image to avoid this guess",
            UserWarning,
            stacklevel=4,
        )
        return lambda x: x.to(torch.float32) / 255.0
    _min_max_warning(low, high, name)
    return _min_max(low, high - low, torch.float32)


def _min_max(low: float, span: float, dtype: torch.dtype) -> Any:
    if span > 0:
        return lambda x: ((x.to(dtype) - low) / span).to(torch.float32)
    return lambda x: torch.zeros(x.shape, dtype=torch.float32)


_STRIP_PIXELS = 1 << 22  # source pixels converted to float at a time when resizing (16 MiB of float32)


def _resize(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(plane[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[
        0, 0
    ]


def _channel(planes: _Planes, c: int, scale: Any, size: tuple[int, int]) -> torch.Tensor:
    """Output channel ``c`` at ``size``, bilinear with antialiasing.

    The resize is separable: the width pass runs on strips of rows (each row is independent), then the
    height pass on the ``(H, w)`` result; this gives the same numbers as one ``F.interpolate`` of the whole
    float image (checked in ``tests/test_image_memory.py``) while only strips are ever in float.
    """
    height, width = planes.height, planes.width
    if size[1] == width:
        plane = scale(planes.rows(c, 0, height))
    else:
        plane = torch.empty((height, size[1]), dtype=torch.float32)
        step = max(1, _STRIP_PIXELS // width)
        for start in range(0, height, step):
            stop = min(height, start + step)
            plane[start:stop] = _resize(scale(planes.rows(c, start, stop)), (stop - start, size[1]))
    return plane if size[0] == height else _resize(plane, size)


def _convert(
    image: Any, rescale_factor: float, do_rescale: bool, resize_to: tuple[int, int] | None
) -> torch.Tensor:
    """One image -> float32 ``(3, h, w)``, one channel at a time (resized to ``resize_to`` when given)."""
    planes = _Planes(image)
    if not planes.finite:
        raise ValueError(f"the {planes.dtype_name} image has NaN or infinite pixel values")
    scale = _scaler(planes, rescale_factor) if do_rescale else (lambda x: x.to(torch.float32))
    size = (planes.height, planes.width) if resize_to is None else tuple(resize_to)
    out = torch.empty((3, *size), dtype=torch.float32)
    done: dict[int, int] = {}
    for c in range(3):
        if planes.key(c) in done:
            out[c] = out[done[planes.key(c)]]
        else:
            out[c] = _channel(planes, c, scale, size)
            done[planes.key(c)] = c
    return out


def to_chw_float(image: Any, rescale_factor: float = 1 / 255, do_rescale: bool = True) -> torch.Tensor:
    """One image -> float32 ``(3, H, W)`` tensor, in [0, 1] when ``do_rescale`` (see the module docstring).

    PIL images keep their pixel type (16-bit and float modes are not clipped to 8 bits). Numpy
    arrays are ``(H, W, C)`` or ``(H, W)``; torch tensors ``(C, H, W)`` or ``(H, W)``; ``C`` is 1, 3 or 4
    (one channel is repeated, alpha is dropped). With ``do_rescale=False`` the values are only cast.
    The result is the only full-size float copy made: channels are converted one at a time.

    Raises:
        ValueError: wrong number of dimensions or channels, an empty image, or NaN / infinite pixels.
    """
    return _convert(image, rescale_factor, do_rescale, None)


def resize_to_chw_float(
    image: Any, size: tuple[int, int], rescale_factor: float = 1 / 255, do_rescale: bool = True
) -> torch.Tensor:
    """:func:`to_chw_float` then a bilinear, antialiased resize to ``size`` = ``(height, width)``, computed one
    channel at a time so that no full-size float copy of the whole image is made (equal to the two steps).
    """
    return _convert(image, rescale_factor, do_rescale, tuple(int(v) for v in size))
