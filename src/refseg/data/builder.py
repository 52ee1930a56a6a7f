"""Shared conversion of RefCOCO-style refs + COCO annotations into rows of the common schema.

Two passes: ``plan_refs`` validates every ref, sentence, annotation and image in the main process
(so bad input fails at prepare time with the file and record named), rasterises each used annotation
once and counts what is dropped; ``generate_rows`` then yields one row per expression lazily for
``datasets.Dataset.from_generator``.

Official choices followed (ReLA ``grefcoco.py``): crowd annotations are skipped, polygons with fewer than
3 points (odd or < 6 coordinates) are dropped, an annotation with no valid polygon left is dropped, and the
merged target is the union of the remaining instances. refseg also drops polygons with non-finite
coordinates and instances whose mask is empty (e.g. polygons wholly outside the image), so that no target
has zero pixels. Drops are counted once per ref that uses the annotation (``docs/data.md``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image, ImageFile

from ..image_utils import IMAGE_FORMATS, ImageTooLargeError, check_image_pixels
from .coco import CocoIndex, _require, load_refs, segmentation_to_rle
from .masks import rle_area
from .schema import referring_features
from .validate import (
    RefsegDataError,
    as_bbox,
    as_flag,
    as_int,
    as_split_name,
    as_text,
    image_path,
    short,
)

logger = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "validation", "test", "testA", "testB", "testC")
STAT_KEYS = (
    "refs",
    "rows",
    "no_target_rows",
    "multi_target_rows",
    "crowd_annotations_skipped",
    "invalid_polygons_dropped",
    "instances_without_valid_segmentation",
    "empty_instances_dropped",
    "targeted_rows_without_instances",
    "duplicate_ann_ids_dropped",
    "empty_sentences_dropped",
    "duplicate_ref_ids",
)


@dataclass
class RefFormat:
    """How one benchmark's refs map to rows.

    ``targets(ref, where)`` returns ``(ann_ids, ref_is_no_target)`` (``RefsegDataError`` naming ``where``
    for a malformed ``ann_id``); ``sentence_fields(ref, sentence, where)`` returns ``(row_is_no_target, extra_fields)``;
    ``extra_features`` are the dataset-specific columns.
    """

    name: str
    targets: Callable[[dict, str], tuple[list[int], bool]]
    sentence_fields: Callable[[dict, dict, str], tuple[bool, dict]] = lambda ref, sent, where: (False, {})
    extra_features: dict = field(default_factory=dict)
    skip_crowd: bool = True


def malformed_ann_id(ref: dict, where: str, why: str) -> RefsegDataError:
    """The error for a ref whose ``ann_id`` cannot be used."""
    return RefsegDataError(f"{where}: malformed ann_id {short(ref['ann_id'])} ({why})")


def ann_id_list(ref: dict, where: str = "ref") -> list[int]:
    """``ann_id`` as a list of integers (older files store a bare int; loaders wrap it)."""
    ids = ref["ann_id"]
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    try:
        return [as_int(i, "ann_id", where) for i in ids]
    except RefsegDataError:
        raise malformed_ann_id(ref, where, "entries must be integers") from None


def sentence_text(sent: dict, where: str = "sentence") -> str:
    """The expression text: ``raw`` (what ReLA, LAVT, DMMI and RefSegformer feed the text encoder), else
    ``sent``; ``""`` when both are blank. ``RefsegDataError`` if neither key holds a string."""
    if "raw" not in sent and "sent" not in sent:
        raise RefsegDataError(f"{where}: malformed record, no 'raw' or 'sent' string")
    for key in ("raw", "sent"):
        if key in sent:
            text = as_text(sent[key], key, where)
            if text.strip():
                return text
    return ""


def _positive(value, name: str, where: str) -> int:
    out = as_int(value, name, where)
    if out <= 0:
        raise RefsegDataError(f"{where}: field '{name}' must be positive, got {out}")
    return out


class _ImageChecker:
    """Checks each image once: its ``file_name`` stays inside the image folder and its header size matches
    ``instances.json`` (at once); ``decode_all`` then decodes every pixel of every image in threads, so a
    truncated or corrupt file fails at prepare time, naming it."""

    def __init__(self, image_dir: Path, instances_file: Path):
        self.image_dir = image_dir
        self.instances_file = instances_file
        self.seen: dict[int, tuple[str, int, int]] = {}

    def __call__(self, image: dict, image_id: int, where: str) -> tuple[str, int, int]:
        if image_id in self.seen:
            return self.seen[image_id]
        record = f"{self.instances_file}: image {image_id}"
        height = _positive(image["height"], "height", record)
        width = _positive(image["width"], "width", record)
        path = image_path(self.image_dir, image["file_name"], record)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image file not found: {path} (image_id={image_id})")
        size = read_image_size(path, decode=False)
        if size != (height, width):
            raise RefsegDataError(
                f"{where}: image {path} is {size[0]}x{size[1]} but instances.json says "
                f"{height}x{width} (image_id={image_id})"
            )
        self.seen[image_id] = (str(path), height, width)
        return self.seen[image_id]

    def decode_all(self, num_threads: int | None = None) -> None:
        """Decode every checked image fully (``read_image_size``); the first failure in ref order is raised."""
        paths = [Path(p) for p, _, _ in self.seen.values()]
        num_threads = num_threads or min(16, os.cpu_count() or 1)
        truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, whatever another library set
        try:
            with ThreadPoolExecutor(num_threads) as pool:
                for _ in pool.map(read_image_size, paths):
                    pass
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok


def read_image_size(path: Path, decode: bool = True) -> tuple[int, int]:
    """``(height, width)`` of ``path``, after decoding every pixel when ``decode``; ``RefsegDataError`` naming
    the file if it is not a JPEG/PNG/BMP/GIF/TIFF/WebP image (refseg's allow-list, ``refseg.image_utils.IMAGE_FORMATS``),
    is over refseg's pixel cap (``REFSEG_MAX_IMAGE_PIXELS``), is truncated or cannot be decoded (set
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = False`` to have truncation detected, as ``decode_all`` does)."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            width, height = im.size
            check_image_pixels(height, width, "the image")  # before any pixel is decoded
            if decode:
                im.load()
    except ImageTooLargeError as err:
        raise RefsegDataError(f"{path}: {err}") from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        reason = str(err).split("\n")[0][:160] or type(err).__name__
        raise RefsegDataError(f"{path}: cannot decode the image ({reason})") from None
    return height, width


class _AnnotationCache:
    """Reads each used annotation once: ``(status, instance, polygons_dropped)`` with status ``"ok"``,
    ``"crowd"``, ``"no_valid_polygon"`` or ``"empty"``; the instance holds a checked compressed RLE."""

    def __init__(self, coco: CocoIndex, skip_crowd: bool):
        self.coco = coco
        self.skip_crowd = skip_crowd
        self.done: dict[int, tuple[str, dict | None, int]] = {}

    def __call__(self, ann_id: int, height: int, width: int, where: str) -> tuple[str, dict | None, int]:
        if ann_id in self.done:
            return self.done[ann_id]
        ann = self.coco.annotations[ann_id]
        if self.skip_crowd and as_flag(ann.get("iscrowd", 0), "iscrowd", where):
            result = ("crowd", None, 0)
        else:
            rle, dropped = segmentation_to_rle(ann["segmentation"], height, width, where)
            if rle is None:
                result = ("no_valid_polygon", None, dropped)
            elif rle_area(rle) == 0:
                result = ("empty", None, dropped)
            else:
                instance = {
                    "ann_id": ann_id,
                    "category_id": as_int(ann["category_id"], "category_id", where),
                    "bbox": as_bbox(ann["bbox"], where),
                    "segmentation": rle,
                }
                result = ("ok", instance, dropped)
        self.done[ann_id] = result
        return result


def plan_refs(
    refs: list,
    coco: CocoIndex,
    image_dir: str | os.PathLike,
    fmt: RefFormat,
    refs_file: str | os.PathLike,
) -> tuple[dict[str, list[dict]], dict]:
    """Validate refs and group light-weight per-ref jobs by official split; returns ``(jobs, stats)``."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    check_image = _ImageChecker(image_dir, coco.path)
    read_annotation = _AnnotationCache(coco, fmt.skip_crowd)
    jobs: dict[str, list[dict]] = {}
    split_stats: dict[str, Counter] = {}
    seen_ref_ids: set[int] = set()
    for index, ref in enumerate(refs):
        where = f"{refs_file}: ref #{index}"
        _require(ref, ("ref_id", "image_id", "split", "ann_id", "sentences"), where)
        ref_id = as_int(ref["ref_id"], "ref_id", where)
        where = f"{refs_file}: ref #{index} (ref_id={ref_id})"
        split = as_split_name(ref["split"], where)
        stats = split_stats.setdefault(split, Counter(dict.fromkeys(STAT_KEYS, 0)))
        ann_ids, ref_no_target = fmt.targets(ref, where)
        unique_ids = list(dict.fromkeys(ann_ids))
        image_id = as_int(ref["image_id"], "image_id", where)
        image = coco.images.get(image_id)
        if image is None:
            raise RefsegDataError(f"{where}: image_id {image_id} is not in {coco.path}")
        path, height, width = check_image(image, image_id, where)
        anns, statuses, polygons_dropped = [], [], 0
        for ann_id in unique_ids:
            ann = coco.annotations.get(ann_id)
            if ann is None:
                raise RefsegDataError(f"{where}: unknown annotation id {ann_id} (not in {coco.path})")
            ann_image = as_int(ann["image_id"], "image_id", f"{coco.path}: annotation {ann_id}")
            if ann_image != image_id:
                raise RefsegDataError(
                    f"{where}: annotation {ann_id} belongs to image {ann_image}, not {image_id}"
                )
            if ref_no_target:
                continue
            status, instance, dropped = read_annotation(
                ann_id, height, width, f"{where}: annotation {ann_id}"
            )
            statuses.append(status)
            polygons_dropped += dropped
            if instance is not None:
                anns.append(instance)
        if not isinstance(ref["sentences"], list) or not ref["sentences"]:
            raise RefsegDataError(f"{where}: malformed record, 'sentences' must be a non-empty list")
        sentences = []
        for s_index, sent in enumerate(ref["sentences"]):
            s_where = f"{where} sentence #{s_index}"
            _require(sent, ("sent_id",), s_where)
            sent_id = as_int(sent["sent_id"], "sent_id", s_where)
            text = sentence_text(sent, s_where)
            row_no_target, extra = fmt.sentence_fields(ref, sent, s_where)
            if not text.strip():
                stats["empty_sentences_dropped"] += 1
                continue
            no_target = ref_no_target or row_no_target
            sentences.append((sent_id, text, no_target, extra))
            stats["rows"] += 1
            stats["no_target_rows"] += no_target
            if not no_target:
                stats["multi_target_rows"] += len(anns) > 1
                stats["targeted_rows_without_instances"] += not anns
        stats["refs"] += 1
        stats["duplicate_ann_ids_dropped"] += len(ann_ids) - len(unique_ids)
        stats["crowd_annotations_skipped"] += statuses.count("crowd")
        stats["invalid_polygons_dropped"] += polygons_dropped
        stats["instances_without_valid_segmentation"] += statuses.count("no_valid_polygon")
        stats["empty_instances_dropped"] += statuses.count("empty")
        stats["duplicate_ref_ids"] += ref_id in seen_ref_ids  # grefer.py only warns about these
        seen_ref_ids.add(ref_id)
        if not sentences:
            continue
        jobs.setdefault(split, []).append(
            {
                "image": path,
                "image_id": image_id,
                "ref_id": ref_id,
                "anns": anns,
                "sentences": sentences,
            }
        )
    if not any(stats["rows"] for stats in split_stats.values()):
        raise RefsegDataError(f"{refs_file}: no rows to write ({len(refs)} refs read)")
    check_image.decode_all()
    order = {name: i for i, name in enumerate(SPLIT_ORDER)}
    jobs = dict(sorted(jobs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    stats = {"dataset": fmt.name, "splits": {s: {k: split_stats[s][k] for k in STAT_KEYS} for s in jobs}}
    stats["total"] = {k: sum(c[k] for c in split_stats.values()) for k in STAT_KEYS}
    stats["images"] = len(check_image.seen)
    logger.info("%s: %s", fmt.name, stats["total"])
    return jobs, stats


def generate_rows(jobs: list[dict]) -> Iterator[dict]:
    """One row per expression (``docs/data.md``, "Row schema"); images stay as paths until written."""
    for job in jobs:
        instances = job["anns"]
        for sent_id, text, no_target, extra in job["sentences"]:
            yield {
                "image": job["image"],
                "image_id": job["image_id"],
                "ref_id": job["ref_id"],
                "sent_id": sent_id,
                "sentence": text,
                "no_target": no_target,
                "instances": [] if no_target else instances,
                **extra,
            }


def build_dataset_dict(
    jobs: Mapping[str, list[dict]],
    fmt: RefFormat,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """``Dataset.from_generator`` per split with the schema features (rows generated lazily)."""
    features = referring_features(fmt.extra_features)
    out = {}
    for split, split_jobs in jobs.items():
        nproc = num_proc if num_proc and num_proc > 1 and len(split_jobs) >= num_proc else None
        out[split] = datasets.Dataset.from_generator(
            generate_rows,
            features=features,
            gen_kwargs={"jobs": split_jobs},
            num_proc=nproc,
            cache_dir=cache_dir,
            split=datasets.NamedSplit(split),
            fingerprint=uuid.uuid4().hex,  # never reuse a stale cache; hashing all jobs would be slow
        )
    return datasets.DatasetDict(out)


def build_from_refs(
    fmt: RefFormat,
    refs_file: Path,
    instances_file: Path,
    image_dir: Path,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Validate every ref against ``instances_file`` and ``image_dir`` (``plan_refs``), then generate the
    rows lazily (``build_dataset_dict``); returns ``(dataset, stats)``. Shared by every benchmark builder."""
    jobs, stats = plan_refs(load_refs(refs_file), CocoIndex(instances_file), image_dir, fmt, refs_file)
    return build_dataset_dict(jobs, fmt, num_proc, cache_dir), stats
