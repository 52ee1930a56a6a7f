"""Uploaded images: size check, then refseg's own image loader; messages never show server paths.

The app hands every upload to :func:`refseg.image_utils.load_image` (the one loader with refseg's
format allow-list and pixel cap) instead of letting Gradio decode it, so a text file, a PostScript file
or a pixel bomb gets refseg's message. The temporary path Gradio stored the upload under is replaced by
"the upload" in every message.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

import PIL.Image

from .limits import AppLimits, check_upload_size

__all__ = ["DATA_URL_PREFIX", "data_url_to_file", "read_upload"]

#: name prefix of the files :func:`data_url_to_file` writes (the app deletes them after use)
DATA_URL_PREFIX = "refseg-data-url-"


def _scrub(message: str, path: str) -> str:
    """``message`` without ``path`` or its folder (the loader's "cannot read image file PATH: " dropped)."""
    folder = os.path.dirname(path)
    for text, words in ((f"cannot read image file {path}: ", ""), (f" '{path}'", ""), (path, "the upload")):
        message = message.replace(text, words)
    return message.replace(folder, "the upload folder") if folder else message


def read_upload(path: str | os.PathLike, limits: AppLimits) -> PIL.Image.Image:
    """The uploaded file at ``path`` as an RGB image; ValueError with a path-free message otherwise."""
    from ..image_utils import load_image
    from ..visualization import to_rgb

    text = os.fspath(path)
    try:
        size = os.stat(text).st_size
    except OSError:
        raise ValueError("The upload is gone from the server; upload the image again.") from None
    check_upload_size(size, limits)
    try:
        image = load_image(text, timeout=None)
        return to_rgb(image)
    except Exception as err:  # noqa: BLE001 - any decoding failure is the upload's problem
        raise ValueError(f"The upload is not an image refseg can read: {_scrub(str(err), text)}") from None


def data_url_to_file(url: str, folder: str | os.PathLike, limits: AppLimits) -> str:
    """Write the bytes of a ``data:...;base64,`` URL to a new file in ``folder``; return its path.

    The URL's length is checked against the upload limit before anything is decoded.
    """
    head, _, payload = url.partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("An image sent as a data URL must be base64: 'data:image/png;base64,...'.")
    check_upload_size(len(payload) * 3 // 4, limits)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The image's data URL is not valid base64.") from None
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=DATA_URL_PREFIX, dir=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return name
