"""Reading the official annotation files: COCO ``instances.json`` and RefCOCO-style refs files.

Refs are a list of dicts (JSON for gRefCOCO, a pickle ``refs(<split_by>).p`` elsewhere, read with
``safe_pickle`` so that no code from the file runs); annotations are COCO dicts whose ``segmentation`` is a
polygon list, an uncompressed RLE (``counts`` list, used by crowd annotations) or a compressed RLE
(``counts`` string). Every value is checked where it is read (``validate``, ``masks.rle_runs``); see
``docs/data.md``, "What is checked".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .masks import canonical_rle, check_polygons, polygon_is_valid, polygons_to_rle, rle_size
from .safe_pickle import safe_load
from .validate import RefsegDataError, as_int, short


def read_json(path: Path):
    """``json.load`` of a UTF-8 file; ``RefsegDataError`` naming the file if it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise RefsegDataError(f"{path}: not valid JSON ({str(err)[:120]})") from None


def _index(records, keys, where: str, kind: str) -> dict[int, dict]:
    """``{id: record}`` after checking each record's keys; identical repeats are merged, conflicting ones refused."""
    if not isinstance(records, list):
        raise RefsegDataError(f"{where}: '{kind}' must be a list, got {type(records).__name__}")
    out: dict[int, dict] = {}
    for i, record in enumerate(records):
        rec_where = f"{where}: {kind}[{i}]"
        _require(record, keys, rec_where)
        record_id = as_int(record["id"], "id", rec_where)
        if record_id in out and out[record_id] != record:
            raise RefsegDataError(f"{rec_where}: {kind} id {record_id} appears twice with different contents")
        out[record_id] = record
    return out


class CocoIndex:
    """``images`` and ``annotations`` of a COCO ``instances.json`` indexed by id."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.path}")
        data = read_json(self.path)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise RefsegDataError(f"{self.path}: expected a COCO dict with 'images' and 'annotations' lists")
        self.images = _index(data["images"], ("id", "file_name", "height", "width"), str(self.path), "images")
        self.annotations = _index(
            data["annotations"],
            ("id", "image_id", "segmentation", "bbox", "category_id"),
            str(self.path),
            "annotations",
        )
        categories = data.get("categories", [])
        self.categories = {}
        for i, c in enumerate(categories if isinstance(categories, list) else []):
            if isinstance(c, Mapping) and "id" in c:
                self.categories[as_int(c["id"], "id", f"{self.path}: categories[{i}]")] = str(
                    c.get("name", "")
                )


def load_refs(path: str | os.PathLike) -> list[dict]:
    """Load a refs file: JSON list (``grefs(unc).json``) or pickled list (``refs(unc).p``, read with
    ``safe_pickle.safe_load``: only plain data is accepted, nothing in the file is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"refs file not found: {path}")
    refs = read_json(path) if path.suffix == ".json" else safe_load(path)
    if not isinstance(refs, list):
        raise RefsegDataError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _require(record, keys, where: str) -> None:
    if not isinstance(record, Mapping):
        raise RefsegDataError(f"{where}: malformed record, expected a dict, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise RefsegDataError(f"{where}: malformed record, missing key(s) {missing}")


def valid_polygons(segmentation: list) -> list[list[float]]:
    """Polygons kept: even length, at least 3 points (ReLA ``grefcoco.py``) and finite coordinates."""
    return [p for p in segmentation if polygon_is_valid(p)]


def segmentation_to_rle(segmentation, height: int, width: int, where: str) -> tuple[dict | None, int]:
    """``(rle, polygons_dropped)``: polygons (invalid ones dropped) or a checked RLE of the image size as
    compressed RLE with ``str`` counts; ``rle`` is None when no valid polygon is left.

    ``RefsegDataError`` naming ``where`` for malformed polygons, an RLE of another size or run lengths that
    are negative or do not sum to ``height * width`` (garbage or empty compressed strings included).
    """
    if isinstance(segmentation, list):
        polygons = check_polygons(segmentation, where)
        kept = valid_polygons(polygons)
        dropped = len(polygons) - len(kept)
        return (polygons_to_rle(kept, height, width) if kept else None), dropped
    if not isinstance(segmentation, Mapping):
        raise RefsegDataError(f"{where}: malformed segmentation of type {type(segmentation).__name__}")
    size = list(rle_size(segmentation, where))
    if size != [height, width]:
        raise RefsegDataError(f"{where}: RLE size {size} does not match the image size {[height, width]}")
    return canonical_rle(segmentation, where), 0


def validate_segmentation(segmentation, height: int, width: int, where: str) -> None:
    """Raise ``RefsegDataError`` naming ``where`` unless ``segmentation`` is numeric polygons or a valid RLE of
    the image size (see ``segmentation_to_rle``)."""
    segmentation_to_rle(segmentation, height, width, where)


__all__ = ["CocoIndex", "load_refs", "read_json", "segmentation_to_rle", "short", "valid_polygons"]
