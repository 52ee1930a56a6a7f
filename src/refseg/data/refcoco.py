"""RefCOCO (unc, google), RefCOCO+ (unc), RefCOCOg (umd, google): ``refs(<split_by>).p`` + ``instances.json``.

One referred object per ref (``ann_id`` an int), every row single-target (lichengunc/refer ``refer.py``).
"""

from __future__ import annotations

import datasets

from .benchmark_files import annotation_files, image_folder
from .builder import RefFormat, ann_id_list, build_from_refs, malformed_ann_id

REFCOCO_SPLIT_BYS = {"refcoco": ("unc", "google"), "refcoco+": ("unc",), "refcocog": ("umd", "google")}


def refcoco_targets(ref: dict, where: str) -> tuple[list[int], bool]:
    """``([ann_id], False)``: exactly one non-negative annotation id."""
    ids = ann_id_list(ref, where)
    if len(ids) != 1 or ids[0] < 0:
        raise malformed_ann_id(ref, where, "RefCOCO refs refer to exactly one annotation")
    return ids, False


def build_refcoco(
    root,
    image_dir=None,
    variant: str = "refcoco",
    split_by: str | None = None,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Convert RefCOCO/RefCOCO+/RefCOCOg with the given split scheme; returns ``(dataset, stats)``."""
    if variant not in REFCOCO_SPLIT_BYS:
        raise ValueError(f"unknown dataset {variant!r}; choose from {sorted(REFCOCO_SPLIT_BYS)}")
    split_by = split_by or REFCOCO_SPLIT_BYS[variant][0]
    if split_by not in REFCOCO_SPLIT_BYS[variant]:
        raise ValueError(
            f"{variant} has no split scheme {split_by!r}; choose from {REFCOCO_SPLIT_BYS[variant]}"
        )
    fmt = RefFormat(name=f"{variant}-{split_by}", targets=refcoco_targets)
    refs_file, instances = annotation_files(root, [variant], [f"refs({split_by}).p"])
    return build_from_refs(
        fmt, refs_file, instances, image_folder(root, image_dir, "train2014"), num_proc, cache_dir
    )
