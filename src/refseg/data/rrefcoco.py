"""R-RefCOCO / R-RefCOCO+ / R-RefCOCOg (RefSegformer): RefCOCO-style refs whose sentences carry ``exist``.

A sentence whose ``exist`` flag is false is a negative: it becomes a no-target row that keeps its ``ref_id``
(the mRR/rIoU metric groups sentences by ref). Sentences without the key are positive, as in
RefSegformer ``ReferDataset.get_exist``. ``exist`` is read by value (``0``, ``"0"`` and ``"false"`` are
false; an unknown string is an error naming the field) and kept as a column.
"""

from __future__ import annotations

import datasets

from .benchmark_files import annotation_files, image_folder
from .builder import RefFormat, ann_id_list, build_from_refs
from .validate import as_flag

RREFCOCO_VARIANTS = {
    "rrefcoco": ("rrefcoco", "unc"),
    "rrefcoco+": ("rrefcoco+", "unc"),
    "rrefcocog": ("rrefcocog", "umd"),
}


def rrefcoco_sentence_fields(ref: dict, sent: dict, where: str) -> tuple[bool, dict]:
    """``(not exist, {"exist": exist})``; a sentence without ``exist`` is positive."""
    exist = as_flag(sent.get("exist", True), "exist", where)
    return not exist, {"exist": exist}


def rrefcoco_format(name: str) -> RefFormat:
    """The ``RefFormat`` of one R-RefCOCO variant: targets from ``ann_id``, negatives from ``exist``."""
    return RefFormat(
        name=name,
        targets=lambda ref, where: (ann_id_list(ref, where), False),
        sentence_fields=rrefcoco_sentence_fields,
        extra_features={"exist": datasets.Value("bool")},
    )


def build_rrefcoco(
    root,
    image_dir=None,
    variant: str = "rrefcoco",
    split_by: str | None = None,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Convert one R-RefCOCO variant (``rrefcoco``, ``rrefcoco+``, ``rrefcocog``); returns ``(dataset, stats)``."""
    if variant not in RREFCOCO_VARIANTS:
        raise ValueError(f"unknown R-RefCOCO variant {variant!r}; choose from {sorted(RREFCOCO_VARIANTS)}")
    folder, default_split_by = RREFCOCO_VARIANTS[variant]
    split_by = split_by or default_split_by
    fmt = rrefcoco_format(variant)
    refs_file, instances = annotation_files(root, [folder], [f"refs({split_by}).p"])
    return build_from_refs(
        fmt, refs_file, instances, image_folder(root, image_dir, "train2014"), num_proc, cache_dir
    )
