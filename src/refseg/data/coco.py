"""Reading the official annotation files: COCO ``instances.json`` and RefCOCO-style refs files.

Field names and quirks follow notes/originals.md section 1: refs are a list of dicts (JSON for
gRefCOCO, pickle ``refs(<split_by>).p`` elsewhere); annotations are COCO dicts whose
``segmentation`` is a polygon list, an uncompressed RLE (``counts`` list, used by crowd
annotations) or a compressed RLE (``counts`` string).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

from pycocotools import mask as mask_utils


class CocoIndex:
    """``images`` and ``annotations`` of a COCO ``instances.json`` indexed by id."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.path}")
        try:
            with open(self.path) as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: not valid JSON ({err})") from err
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise ValueError(f"{self.path}: expected a COCO dict with 'images' and 'annotations' lists")
        self.images: dict[int, dict] = {}
        for i, img in enumerate(data["images"]):
            _require(img, ("id", "file_name", "height", "width"), f"{self.path}: images[{i}]")
            self.images[int(img["id"])] = img
        self.annotations: dict[int, dict] = {}
        for i, ann in enumerate(data["annotations"]):
            _require(
                ann,
                ("id", "image_id", "segmentation", "bbox", "category_id"),
                f"{self.path}: annotations[{i}]",
            )
            self.annotations[int(ann["id"])] = ann
        self.categories = {int(c["id"]): c.get("name", "") for c in data.get("categories", [])}


def load_refs(path: str | os.PathLike) -> list[dict]:
    """Load a refs file: JSON list (``grefs(unc).json``) or pickled list (``refs(unc).p``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"refs file not found: {path}")
    try:
        if path.suffix == ".json":
            with open(path) as f:
                refs = json.load(f)
        else:
            with open(path, "rb") as f:
                refs = pickle.load(f)
    except (json.JSONDecodeError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path}: cannot be read as a refs file ({err})") from err
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _require(record, keys, where: str) -> None:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: malformed record, expected a dict, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{where}: malformed record, missing key(s) {missing}")


def valid_polygons(segmentation: list) -> list[list[float]]:
    """Polygons kept by the official loaders: even length and at least 3 points (ReLA grefcoco.py)."""
    return [p for p in segmentation if len(p) % 2 == 0 and len(p) >= 6]


def validate_segmentation(segmentation, height: int, width: int, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``segmentation`` is numeric polygons or an RLE of the image size."""
    if isinstance(segmentation, list):
        for poly in segmentation:
            if not isinstance(poly, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
            ):
                raise ValueError(f"{where}: malformed polygon segmentation {str(poly)[:60]}")
        return
    if not (isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation):
        raise ValueError(f"{where}: malformed segmentation of type {type(segmentation).__name__}")
    size = [int(v) for v in segmentation["size"]]
    if size != [height, width]:
        raise ValueError(f"{where}: RLE size {size} does not match the image size {[height, width]}")
    if not isinstance(segmentation["counts"], (list, str, bytes)):
        raise ValueError(
            f"{where}: RLE counts must be a list, str or bytes, got {type(segmentation['counts']).__name__}"
        )


def segmentation_to_rle(segmentation, height: int, width: int, where: str) -> dict:
    """Polygons (already filtered) or RLE (compressed/uncompressed) to compressed RLE with ``str`` counts."""
    if isinstance(segmentation, list):
        try:
            rles = mask_utils.frPyObjects([[float(v) for v in p] for p in segmentation], height, width)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: malformed polygon segmentation ({err})") from err
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise ValueError(f"{where}: RLE size {size} does not match the image size {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise ValueError(f"{where}: RLE counts must be a list, str or bytes, got {type(counts).__name__}")
    else:
        raise ValueError(f"{where}: malformed segmentation of type {type(segmentation).__name__}")
    counts = rle["counts"]
    return {
        "size": [height, width],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
