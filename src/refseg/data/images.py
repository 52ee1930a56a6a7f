"""Images of dataset rows, decoded by refseg's one loader (``refseg.image_utils.load_image``).

``datasets.Image()`` decodes with any format Pillow knows (an EPS file runs Ghostscript), no pixel cap.
:func:`without_image_decoding` turns that off (the column then holds ``{"bytes", "path"}``) and
:func:`load_row_image` decodes one row's image with the allow-list, the pixel cap and EXIF orientation.

EXIF orientation and annotations: the masks of a row must be in the orientation its image is read in.
A row's image is turned to its displayed orientation, unless its instance masks have the stored size but
not the displayed one (annotations made on the stored pixels): then it is kept as stored, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..image_utils import exif_upright, is_single_image, load_image

__all__ = ["load_row_image", "without_image_decoding"]


def without_image_decoding(dataset: Any, column: str = "image") -> Any:
    """``dataset`` (``Dataset`` or ``DatasetDict``) with its ``column`` of ``datasets.Image`` left encoded."""
    import datasets

    features = dataset.features if isinstance(dataset, datasets.Dataset) else None
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({k: without_image_decoding(v, column) for k, v in dataset.items()})
    if features is not None and isinstance(features.get(column), datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def _annotation_size(row: dict) -> tuple[int, int] | None:
    """``(height, width)`` of the row's first instance mask (its COCO RLE ``size``), if any."""
    for instance in row.get("instances") or []:
        segmentation = instance.get("segmentation") if isinstance(instance, dict) else None
        size = segmentation.get("size") if isinstance(segmentation, dict) else None
        if size is not None and len(size) == 2:
            return int(size[0]), int(size[1])
    return None


def load_row_image(row: dict, column: str = "image") -> Any:
    """The image of one dataset row (an encoded ``{"bytes", "path"}`` value or a path) through refseg's loader,
    upright. An image already decoded (PIL image, array or tensor, e.g. by an augmentation) is returned as it is.

    Raises what :func:`refseg.image_utils.load_image` raises (one line naming the image).
    """
    if is_single_image(row[column]):
        return row[column]
    stored = load_image(row[column], apply_exif_orientation=False)
    upright = exif_upright(stored)
    expected = _annotation_size(row)
    if upright is not stored and expected is not None:
        if expected == (stored.height, stored.width) != (upright.height, upright.width):
            warnings.warn(
                f"image of row {row.get('image_id', '?')}: its masks are {expected[1]} x {expected[0]}, the "
                "stored size; EXIF orientation not applied so that image and masks agree",
                UserWarning,
                stacklevel=2,
            )
            return stored
    return upright
