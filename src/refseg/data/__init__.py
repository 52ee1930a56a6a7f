"""Datasets in one schema: synthetic referring scenes, benchmark builders, augmentation, collation.

Every public name is imported on first use (PEP 562 ``__getattr__``), so ``import refseg`` and
``import refseg.data`` load neither ``datasets`` nor ``pycocotools`` nor any dataset builder. To add a
public name, add it to ``_LAZY`` with the submodule that defines it.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule of refseg.data that defines it
_LAZY: dict[str, str] = {
    # COCO RLE / polygon / box helpers
    "decode_rle": "masks",
    "encode_mask": "masks",
    "mask_to_bbox": "masks",
    "merge_instances": "masks",
    "polygons_to_rle": "masks",
    "referring_features": "schema",
    # loading a dataset of the row schema (prepared folder, parquet, save_to_disk, Hub)
    "load_referring_dataset": "loading",
    # benchmark builders (gRefCOCO, Ref-ZOM, R-RefCOCO, RefCOCO/+/g) and preparation
    "BUILDERS": "prepare",
    "build_benchmark": "prepare",
    "build_grefcoco": "grefcoco",
    "build_refcoco": "refcoco",
    "build_refzom": "refzom",
    "build_rrefcoco": "rrefcoco",
    "prepare_dataset": "prepare",
    "write_parquet": "prepare",
    # presence/plurality augmentation
    "PresencePluralityAugmentation": "augmentation",
    "plurality_labels": "augmentation",
    # synthetic referring scenes
    "synthetic_scene_splits": "synthetic",
    "synthetic_scenes": "synthetic",
    "synthetic_tokenizer": "synthetic",
    # the error raised for bad benchmark files
    "RefsegDataError": "validate",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (keeps ``import refseg`` light)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = sorted(_LAZY)
