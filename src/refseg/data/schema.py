"""The common dataset schema (``docs/data.md``, "Row schema") as ``datasets.Features``."""

from __future__ import annotations

import datasets


def instance_feature() -> dict:
    """The ``datasets`` feature of one referred instance (ids, COCO ``bbox``, RLE ``segmentation``)."""
    return {
        "ann_id": datasets.Value("int64"),
        "category_id": datasets.Value("int64"),
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
        "segmentation": {
            "size": datasets.Sequence(datasets.Value("int64"), length=2),
            "counts": datasets.Value("string"),
        },
    }


def referring_features(extra: dict | None = None) -> datasets.Features:
    """Features of one row per expression; ``extra`` adds dataset-specific fields (``source``, ``exist``)."""
    fields = {
        "image": datasets.Image(),
        "image_id": datasets.Value("int64"),
        "ref_id": datasets.Value("int64"),
        "sent_id": datasets.Value("int64"),
        "sentence": datasets.Value("string"),
        "no_target": datasets.Value("bool"),
        "instances": datasets.List(instance_feature()),
    }
    fields.update(extra or {})
    return datasets.Features(fields)
