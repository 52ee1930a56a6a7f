"""Datasets in one schema: synthetic referring scenes, benchmark builders, augmentation, collation."""

from .features import referring_features
from .masks import decode_rle, encode_mask, mask_to_bbox, merge_instances, polygons_to_rle

__all__ = [
    "decode_rle",
    "encode_mask",
    "mask_to_bbox",
    "merge_instances",
    "polygons_to_rle",
    "referring_features",
]

# benchmark builders (gRefCOCO, Ref-ZOM, R-RefCOCO, RefCOCO/+/g), preparation, presence/plurality augmentation
from .augmentation import PresencePluralityAugmentation, plurality_labels
from .grefcoco import build_grefcoco
from .prepare import BUILDERS, build_benchmark, prepare_dataset, write_parquet
from .refcoco import build_refcoco
from .refzom import build_refzom
from .rrefcoco import build_rrefcoco
from .synthetic import synthetic_scene_splits, synthetic_scenes, synthetic_tokenizer

__all__ += [
    "BUILDERS",
    "build_benchmark",
    "build_grefcoco",
    "build_refcoco",
    "build_refzom",
    "build_rrefcoco",
]
__all__ += ["prepare_dataset", "write_parquet"]
__all__ += ["PresencePluralityAugmentation", "plurality_labels"]
__all__ += ["synthetic_scene_splits", "synthetic_scenes", "synthetic_tokenizer"]  # synthetic referring scenes
from .validate import RefsegDataError  # noqa: E402  (the error raised for bad benchmark files)

__all__ += ["RefsegDataError"]
