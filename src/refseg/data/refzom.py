"""Ref-ZOM (DMMI): ``refs(final).p`` + ``instances.json`` + merged COCO ``trainval2014`` images.

Each ref carries ``source``; only ``source == 'zero'`` changes behaviour (absent key = ``'one'``, as in
DMMI ``refer.py``). One-to-zero refs keep ``ann_id`` pointing at real annotations but have no target
(DMMI ``refer.py``); those ids are still checked to exist, as the official index build does. ``source``
must be a string; it is compared after stripping and lower-casing.
"""

from __future__ import annotations

import datasets

from .benchmark_files import annotation_files, image_folder
from .builder import RefFormat, ann_id_list, build_from_refs
from .validate import as_text


def refzom_source(ref: dict, where: str) -> str:
    """The ref's ``source`` (``"one"`` when absent), a string compared by value."""
    return as_text(ref.get("source", "one"), "source", where).strip().lower()


def refzom_targets(ref: dict, where: str) -> tuple[list[int], bool]:
    """``(ann_ids, source == "zero")``."""
    return ann_id_list(ref, where), refzom_source(ref, where) == "zero"


def refzom_sentence_fields(ref: dict, sent: dict, where: str) -> tuple[bool, dict]:
    """Every row keeps the ref's ``source`` as a column."""
    return False, {"source": refzom_source(ref, where)}


REFZOM = RefFormat(
    name="refzom",
    targets=refzom_targets,
    sentence_fields=refzom_sentence_fields,
    extra_features={"source": datasets.Value("string")},
)


def build_refzom(
    root,
    image_dir=None,
    split_by: str = "final",
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Convert Ref-ZOM to a ``DatasetDict`` (train/test); returns ``(dataset, stats)``."""
    refs_file, instances = annotation_files(root, ["ref-zom", "refzom"], [f"refs({split_by}).p"])
    return build_from_refs(
        REFZOM, refs_file, instances, image_folder(root, image_dir, "trainval2014"), num_proc, cache_dir
    )
