"""Shared conversion of RefCOCO-style refs + COCO annotations into rows of the common schema.

Two passes: ``plan_refs`` validates every ref, sentence, annotation and image in the main process
(so bad input fails at prepare time with the file and record named) and counts what the official
loaders drop; ``generate_rows`` then rasterises instances and yields one row per expression lazily
for ``datasets.Dataset.from_generator``.

Official choices followed (ReLA ``grefcoco.py``, notes/originals.md section 1): crowd annotations are
skipped, polygons with fewer than 3 points (odd or < 6 coordinates) are dropped, an annotation with no
valid polygon left is dropped, and the merged target is the union of the remaining instances. Drops are counted once per ref that
uses the annotation.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image

from .coco import CocoIndex, _require, load_refs, segmentation_to_rle, valid_polygons, validate_segmentation
from .features import referring_features

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
    "targeted_rows_without_instances",
    "duplicate_ref_ids",
)


@dataclass
class RefFormat:
    """How one benchmark's refs map to rows.

    ``targets(ref)`` returns ``(ann_ids, ref_is_no_target)``; ``sentence_fields(ref, sentence)`` returns
    ``(row_is_no_target, extra_fields)``; ``extra_features`` are the dataset-specific columns.
    """

    name: str
    targets: Callable[[dict], tuple[list[int], bool]]
    sentence_fields: Callable[[dict, dict], tuple[bool, dict]] = lambda ref, sent: (False, {})
    extra_features: dict = field(default_factory=dict)
    skip_crowd: bool = True


def ann_id_list(ref: dict) -> list[int]:
    """``ann_id`` as a list (older files store a bare int; loaders wrap it)."""
    ids = ref["ann_id"]
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    return [int(i) for i in ids]


def sentence_text(sent: dict) -> str:
    """The expression text: ``raw`` (what ReLA, LAVT, DMMI and RefSegformer feed the text encoder), else ``sent``."""
    text = sent.get("raw", sent.get("sent"))
    if not isinstance(text, str):
        raise KeyError("raw")
    return text


class _ImageChecker:
    """Checks each image once: the file exists and its header size matches ``instances.json``."""

    def __init__(self, image_dir: Path):
        self.image_dir = image_dir
        self.seen: dict[int, str] = {}

    def __call__(self, image: dict, where: str) -> str:
        image_id = int(image["id"])
        if image_id in self.seen:
            return self.seen[image_id]
        path = self.image_dir / image["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image file not found: {path} (image_id={image_id})")
        try:
            with Image.open(path) as im:
                width, height = im.size
        except OSError as err:
            raise ValueError(f"{where}: cannot read image {path} ({err})") from err
        if (height, width) != (int(image["height"]), int(image["width"])):
            raise ValueError(
                f"{where}: image {path} is {height}x{width} but instances.json says "
                f"{image['height']}x{image['width']} (image_id={image_id})"
            )
        self.seen[image_id] = str(path)
        return self.seen[image_id]


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
    check_image = _ImageChecker(image_dir)
    jobs: dict[str, list[dict]] = {}
    split_stats: dict[str, Counter] = {}
    seen_ref_ids: set[int] = set()
    for index, ref in enumerate(refs):
        where = f"{refs_file}: ref #{index}"
        _require(ref, ("ref_id", "image_id", "split", "ann_id", "sentences"), where)
        where = f"{refs_file}: ref #{index} (ref_id={ref['ref_id']})"
        split = str(ref["split"])
        stats = split_stats.setdefault(split, Counter(dict.fromkeys(STAT_KEYS, 0)))
        try:
            ann_ids, ref_no_target = fmt.targets(ref)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: malformed ann_id {ref['ann_id']!r} ({err})") from err
        image = coco.images.get(int(ref["image_id"]))
        if image is None:
            raise ValueError(f"{where}: image_id {ref['image_id']} is not in {coco.path}")
        path = check_image(image, where)
        height, width = int(image["height"]), int(image["width"])
        anns = []
        for ann_id in ann_ids:
            ann = coco.annotations.get(ann_id)
            if ann is None:
                raise ValueError(f"{where}: unknown annotation id {ann_id} (not in {coco.path})")
            if int(ann["image_id"]) != int(image["id"]):
                raise ValueError(
                    f"{where}: annotation {ann_id} belongs to image {ann['image_id']}, not {image['id']}"
                )
            if ref_no_target:
                continue
            if fmt.skip_crowd and ann.get("iscrowd", 0):
                stats["crowd_annotations_skipped"] += 1
                continue
            segm = ann["segmentation"]
            validate_segmentation(segm, height, width, f"{where}: annotation {ann_id}")
            if isinstance(segm, list):
                kept = valid_polygons(segm)
                stats["invalid_polygons_dropped"] += len(segm) - len(kept)
                if not kept:
                    stats["instances_without_valid_segmentation"] += 1
                    continue
                segm = kept
            bbox = ann["bbox"]
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise ValueError(f"{where}: annotation {ann_id} has a malformed bbox {bbox!r}")
            anns.append(
                {
                    "ann_id": ann_id,
                    "category_id": int(ann["category_id"]),
                    "bbox": [float(v) for v in bbox],
                    "segmentation": segm,
                }
            )
        if not isinstance(ref["sentences"], list) or not ref["sentences"]:
            raise ValueError(f"{where}: malformed record, 'sentences' must be a non-empty list")
        sentences = []
        for s_index, sent in enumerate(ref["sentences"]):
            s_where = f"{where} sentence #{s_index}"
            _require(sent, ("sent_id",), s_where)
            try:
                text = sentence_text(sent)
            except KeyError:
                raise ValueError(f"{s_where}: malformed record, no 'raw' or 'sent' string") from None
            row_no_target, extra = fmt.sentence_fields(ref, sent)
            no_target = ref_no_target or row_no_target
            sentences.append((int(sent["sent_id"]), text, no_target, extra))
            stats["rows"] += 1
            stats["no_target_rows"] += no_target
            if not no_target:
                stats["multi_target_rows"] += len(anns) > 1
                stats["targeted_rows_without_instances"] += not anns
        stats["refs"] += 1
        stats["duplicate_ref_ids"] += int(ref["ref_id"]) in seen_ref_ids  # grefer.py only warns about these
        seen_ref_ids.add(int(ref["ref_id"]))
        jobs.setdefault(split, []).append(
            {
                "image": path,
                "image_id": int(image["id"]),
                "ref_id": int(ref["ref_id"]),
                "height": height,
                "width": width,
                "anns": anns,
                "sentences": sentences,
                "where": where,
            }
        )
    order = {name: i for i, name in enumerate(SPLIT_ORDER)}
    jobs = dict(sorted(jobs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    stats = {"dataset": fmt.name, "splits": {s: {k: split_stats[s][k] for k in STAT_KEYS} for s in jobs}}
    stats["total"] = {k: sum(c[k] for c in split_stats.values()) for k in STAT_KEYS}
    stats["images"] = len(check_image.seen)
    logger.info("%s: %s", fmt.name, stats["total"])
    return jobs, stats


def job_instances(job: dict) -> list[dict]:
    """Rasterise one job's annotations to RLE instances (done lazily, inside the generator)."""
    out = []
    for ann in job["anns"]:
        where = f"{job['where']} annotation {ann['ann_id']}"
        rle = segmentation_to_rle(ann["segmentation"], job["height"], job["width"], where)
        out.append({**ann, "segmentation": rle})
    return out


def generate_rows(jobs: list[dict]) -> Iterator[dict]:
    """One row per expression (DESIGN.md "Dataset rows"); images stay as paths until written."""
    for job in jobs:
        instances = job_instances(job)
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
