"""Datasets in one schema: synthetic referring scenes, benchmark builders, augmentation, collation.

The names below are imported on first use, so ``import refseg.data`` (and ``refseg data --help``) does not
load ``datasets``, ``pycocotools`` or a dataset builder until one is needed.
"""

from __future__ import annotations

import importlib

_LAZY = {
    # mask helpers
    "decode_rle": ".masks",
    "encode_mask": ".masks",
    "mask_to_bbox": ".masks",
    "merge_instances": ".masks",
    "polygons_to_rle": ".masks",
    "referring_features": ".features",
    # benchmark builders (gRefCOCO, Ref-ZOM, R-RefCOCO, RefCOCO/+/g) and preparation
    "BUILDERS": ".prepare",
    "build_benchmark": ".prepare",
    "prepare_dataset": ".prepare",
    "write_parquet": ".prepare",
    "build_grefcoco": ".grefcoco",
    "build_refcoco": ".refcoco",
    "build_refzom": ".refzom",
    "build_rrefcoco": ".rrefcoco",
    # presence/plurality augmentation
    "PresencePluralityAugmentation": ".augmentation",
    "plurality_labels": ".augmentation",
    # synthetic referring scenes
    "synthetic_scene_splits": ".synthetic",
    "synthetic_scenes": ".synthetic",
    "synthetic_tokenizer": ".synthetic",
    # the error raised for bad benchmark files
    "RefsegDataError": ".validate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Import ``name`` from its submodule on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
