"""Pixel values and bilinear resize exactly as InstanceVG's released test pipeline computes them.

The original decodes files with OpenCV's colour decoder (8-bit, three channels: grey repeated, alpha dropped,
16-bit reduced to its high byte) and resizes the uint8 image with ``cv2.resize(INTER_LINEAR)`` (fixed-point
weights, half-pixel centres, no antialiasing; paper Sec. 4.3, "320 x 320 inputs"). ``"opencv"`` calls that
function (OpenCV is imported lazily); ``"torch"`` approximates it with ``F.interpolate`` rounded back to grey
levels (at most one grey level off). See ``docs/models/instancevg.md``, "Pre-processing".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from ...image_utils import to_chw_float

__all__ = ["RESAMPLE_BACKENDS", "decoded_values", "import_cv2", "resize_bilinear", "resized_values"]

RESAMPLE_BACKENDS = ("opencv", "torch")

_MISSING_OPENCV = (
    "resample_backend='opencv' (the original InstanceVG resize, bit for bit) needs OpenCV: "
    "pip install 'refseg[opencv]' (or opencv-python-headless); resample_backend='torch' needs no OpenCV "
    "and stays within one grey level of it"
)


def import_cv2() -> Any:
    """``cv2``, or ``ImportError`` saying how to install it or avoid it."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError(_MISSING_OPENCV) from err
    return cv2


def _pixel_type(image: Any) -> str:
    """``"uint8"``, ``"uint16"``, ``"int"`` or ``"float"``: the stored type of one image's pixels."""
    if isinstance(image, PIL.Image.Image):
        if image.mode.startswith("I;16"):
            return "uint16"
        return {"I": "int", "F": "float"}.get(image.mode, "uint8")
    dtype = image.dtype
    if isinstance(image, torch.Tensor):
        if dtype.is_floating_point:
            return "float"
        return {torch.uint8: "uint8", torch.bool: "uint8", torch.uint16: "uint16"}.get(dtype, "int")
    if dtype.kind == "f":
        return "float"
    if dtype.kind == "b" or dtype == np.uint8:
        return "uint8"
    return "uint16" if dtype == np.uint16 else "int"


def decoded_values(image: Any) -> tuple[torch.Tensor, bool]:
    """One image -> ``((3, H, W) float32, on_255_scale)``.

    8-bit images give their grey levels (0-255, integers); 16-bit images their high byte, as OpenCV's
    colour decoder reduces 16-bit files; other integer types are scaled by their range to 0-255 (not integral);
    float images are returned as they are (values in [0, 1], ``on_255_scale`` False).
    """
    kind = _pixel_type(image)
    if kind == "float":
        return to_chw_float(image, 1.0, do_rescale=False), False
    if kind == "int":
        return to_chw_float(image) * 255.0, True
    values = to_chw_float(image, 1.0, do_rescale=False)
    if kind == "uint16":
        values = torch.div(values, 256, rounding_mode="floor")  # exact: values < 2**24
    return values, True


def resize_bilinear(
    tensor: torch.Tensor, size: tuple[int, int], grey_levels: bool, backend: str = "opencv"
) -> torch.Tensor:
    """Resize ``(3, H, W)`` float32 to ``size`` = ``(height, width)``, bilinear without antialiasing.

    ``grey_levels``: the values are 0-255 grey levels of an 8-bit image; OpenCV then resizes them as uint8
    (its fixed-point path, as the original) and the torch backend rounds its result back to grey levels.
    """
    height, width = size
    if backend == "torch":
        out = F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False)[0]
        return out.round().clamp(0, 255) if grey_levels else out
    cv2 = import_cv2()
    array = tensor.permute(1, 2, 0).numpy()
    exact_levels = grey_levels and bool((tensor == tensor.round()).all()) and float(tensor.max()) <= 255.0
    array = np.ascontiguousarray(array.astype(np.uint8) if exact_levels else array)
    resized = cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    resized = resized[:, :, None] if resized.ndim == 2 else resized
    return torch.from_numpy(resized.astype(np.float32)).permute(2, 0, 1).contiguous()


def resized_values(
    image: Any, size: tuple[int, int] | None, backend: str = "opencv"
) -> tuple[torch.Tensor, bool]:
    """:func:`decoded_values` resized to ``size`` (``None``: not resized) with :func:`resize_bilinear`.

    An 8-bit PIL image on the OpenCV path goes to ``cv2.resize`` as uint8 directly: no full-size float copy
    of a large photo is made.
    """
    if (
        backend == "opencv"
        and size is not None
        and isinstance(image, PIL.Image.Image)
        and _pixel_type(image) == "uint8"
        and (image.height, image.width) != tuple(size)
    ):
        cv2 = import_cv2()
        array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        resized = cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32).contiguous(), True
    values, grey_levels = decoded_values(image)
    if size is not None and tuple(values.shape[1:]) != tuple(size):
        values = resize_bilinear(values, size, grey_levels, backend)
    return values, grey_levels
