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
from .validate import RefsegDataError, as_int, check_regular_file, read_regular_file, short


def read_json(path: Path, not_found: str | None = None):
    """``json.loads`` of a regular UTF-8 file; ``RefsegDataError`` naming the file if it is not a regular file
    or not valid JSON (integers of more than 4300 digits and nesting deeper than the recursion limit
    included)."""
    data = read_regular_file(path, not_found or f"no such file: {path}")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, int digit limit
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
        data = read_json(self.path, f"COCO annotation file not found: {self.path}")
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
    ``safe_pickle.safe_load``: only plain data is accepted, nothing in the file is run).

    The file must be a regular file (a FIFO or a link to a device is refused, never opened). A pickled
    refs list must not repeat a ``ref_id``: ``refer.py`` indexes refs by id, so a repeat would silently
    replace a ref (gRefCOCO's JSON files only warn, and repeats there are counted, ``duplicate_ref_ids``).
    """
    path = check_regular_file(path, f"refs file not found: {path}")
    refs = read_json(path) if path.suffix == ".json" else safe_load(path)
    if not isinstance(refs, list):
        raise RefsegDataError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    if path.suffix != ".json":
        _check_unique_ref_ids(refs, path)
    return refs


def _check_unique_ref_ids(refs: list, path: Path) -> None:
    """``RefsegDataError`` naming both refs when two refs of a pickled refs list share a ``ref_id``."""
    first: dict[int, int] = {}
    for index, ref in enumerate(refs):
        if isinstance(ref, Mapping) and "ref_id" in ref:
            ref_id = as_int(ref["ref_id"], "ref_id", f"{path}: ref #{index}")
            if ref_id in first:
                raise RefsegDataError(
                    f"{path}: ref #{index} repeats ref_id {ref_id} of ref #{first[ref_id]} (ref ids must be unique)"
                )
            first[ref_id] = index


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


__all__ = ["CocoIndex", "load_refs", "read_json", "segmentation_to_rle", "short", "valid_polygons"]
