"""Ref-ZOM (DMMI): ``refs(final).p`` + ``instances.json`` + merged COCO ``trainval2014`` images.

Each ref carries ``source``; only ``source == 'zero'`` changes behaviour (absent key = ``'one'``, as in
DMMI ``refer.py``). One-to-zero refs keep ``ann_id`` pointing at real annotations but have no target
(notes/originals.md 1.3); those ids are still checked to exist, as the official index build does.
"""

from __future__ import annotations

import datasets

from .builder import RefFormat, ann_id_list, build_from_refs
from .layout import annotation_files, image_folder


def refzom_targets(ref: dict) -> tuple[list[int], bool]:
    return ann_id_list(ref), ref.get("source", "one") == "zero"


def refzom_sentence_fields(ref: dict, sent: dict) -> tuple[bool, dict]:
    return False, {"source": str(ref.get("source", "one"))}


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
