"""gRefCOCO (GRES and GREC): ``grefs(unc).json`` + ``instances.json`` + COCO train2014 images.

No-target refs have ``ann_id == [-1]`` (the flag ``no_target`` in the file is not read by any official
loader: ReLA ``grefcoco.py`` and ``grefer.py`` test ``ann_id == [-1]``). GREC boxes are the ``bbox`` fields of the same annotations and are
kept per instance.
"""

from __future__ import annotations

import datasets

from .benchmark_files import annotation_files, image_folder
from .builder import RefFormat, ann_id_list, build_from_refs, malformed_ann_id


def grefcoco_targets(ref: dict, where: str) -> tuple[list[int], bool]:
    """``(ann_ids, no_target)``; ``[-1]`` means no target, ``-1`` mixed with real ids is malformed."""
    ids = ann_id_list(ref, where)
    if ids == [-1]:
        return [], True
    if -1 in ids or not ids:
        raise malformed_ann_id(ref, where, "-1 (no target) mixed with annotation ids, or an empty list")
    return ids, False


GREFCOCO = RefFormat(name="grefcoco", targets=grefcoco_targets)


def build_grefcoco(
    root,
    image_dir=None,
    split_by: str = "unc",
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Convert gRefCOCO to a ``DatasetDict`` (train/val/testA/testB); returns ``(dataset, stats)``."""
    refs_file, instances = annotation_files(
        root, ["grefcoco"], [f"grefs({split_by}).json", f"grefs({split_by}).p"]
    )
    return build_from_refs(
        GREFCOCO, refs_file, instances, image_folder(root, image_dir, "train2014"), num_proc, cache_dir
    )
