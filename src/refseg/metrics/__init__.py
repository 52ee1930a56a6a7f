"""Metrics of the referring-segmentation benchmarks, identical to the official evaluators.

Each metric is a pure function over per-sample records, so records from any number of processes are
concatenated and then evaluated. Every result carries ``definition`` (whose evaluator it reproduces)
and ``resolution`` (where masks/boxes were measured: ``"original"`` or e.g. ``"480x480"``, an explicit
argument). All numbers are percentages.

GRES, gRefCOCO (``gres_metrics``; ReLA's evaluator):
    gIoU   mean per-sample IoU over all samples; a correctly predicted no-target sample scores 1, a wrong one 0.
    cIoU   cumulative sum I / sum U (a wrong no-target prediction on a target sample keeps |P u G| in the union).
    N-acc  share of no-target samples predicted as no-target; T-acc: share of target samples predicted as targeted.
    Pr@t   share of target samples with IoU >= t (t = 0.7, 0.8, 0.9).
RES, RefCOCO/+/g (``res_metrics``; LAVT's evaluator):
    mIoU   mean per-sentence IoU;  oIoU: sum I / sum U;  P@t: share of sentences with IoU >= t (0.5 ... 0.9).
Ref-ZOM (``refzom_metrics``; DMMI's evaluator):
    mIoU / oIoU / P@t over targeted sentences only;  Acc: share of zero-target sentences with an empty mask.
R-RefCOCO/+/g (``rrefcoco_metrics``; RefSegformer's evaluator, sentences grouped by ref):
    mIoU   mean over refs of the mean IoU of their positive sentences;  oIoU: sum I / sum U over positives.
    mRR    mean over refs of the share of negative sentences with an empty (correctly rejected) mask.
    rIoU   mean over refs of sum I / (sum U + areas predicted for negative sentences).
GREC, gRefCOCO boxes (``grec_metrics``; gRefCOCO's evaluator):
    Pr@(F1=1, IoU>=0.5)  share of expressions whose boxes with score >= 0.7 match the GT boxes one-to-one
                         (greedy, generalized IoU >= 0.5) with no miss and no extra box; no-target: no box kept.
    N-acc / T-acc        share of no-target expressions with no kept box / of target ones with >= 1 kept box.
REC, RefCOCO/+/g boxes (``rec_metrics``):
    Precision@0.5  share of expressions whose top-scoring box has IoU >= 0.5 with the GT box.

Records: ``MaskRecord`` (``segmentation_record`` / ``segmentation_records`` from masks or post-processed
prediction dicts), ``GRECRecord`` (``grec_record`` / ``grec_record_from_prediction``), ``RECRecord``
(``rec_record`` / ``rec_record_from_prediction``); ``*_for_row`` build them from a prediction dict and a
dataset row (the row schema of ``docs/data.md``) at the original size. ``evaluate`` wrappers: ``GRESMetric``, ``RESMetric``,
``RefZOMMetric``, ``RRefCOCOMetric``, ``GRECMetric``, ``RECMetric`` (imported lazily from
``refseg.metrics.evaluate_modules``) and ``evaluate.load(module_path(name))`` offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .grec import GRECRecord, grec_metrics, grec_record, grec_record_from_prediction
from .gres import gres_metrics, gres_sample_scores
from .mask_records import (
    MaskRecord,
    batch_mask_counts,
    mask_counts,
    segmentation_record,
    segmentation_records,
)
from .rec import RECRecord, rec_metrics, rec_record, rec_record_from_prediction
from .record_columns import format_resolution
from .refzom import refzom_metrics
from .res import res_metrics
from .rrefcoco import rrefcoco_metrics, rrefcoco_ref_scores

METRIC_NAMES: tuple[str, ...] = ("gres", "res", "refzom", "rrefcoco", "grec", "rec")
_LAZY = ("GRESMetric", "RESMetric", "RefZOMMetric", "RRefCOCOMetric", "GRECMetric", "RECMetric")
# row helpers decode COCO RLE (pycocotools): imported on first use so that ``import refseg.metrics`` stays light
_LAZY_ROWS = (
    "grec_record_for_row",
    "rec_record_for_row",
    "row_gt_boxes",
    "row_gt_mask",
    "segmentation_record_for_row",
)


def module_path(name: str) -> str:
    """Path of the bundled ``evaluate`` module script for ``name`` (one of ``METRIC_NAMES``), for ``evaluate.load``."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; choose one of {list(METRIC_NAMES)}")
    return str(Path(__file__).parent / "modules" / name / f"{name}.py")


def __getattr__(name: str) -> Any:  # lazy: importing evaluate is slow and optional
    if name in _LAZY:
        from . import evaluate_modules

        return getattr(evaluate_modules, name)
    if name in _LAZY_ROWS:
        from . import dataset_rows

        return getattr(dataset_rows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_LAZY_ROWS})


__all__ = [
    "METRIC_NAMES",
    "GRECRecord",
    "MaskRecord",
    "RECRecord",
    "batch_mask_counts",
    "format_resolution",
    "grec_metrics",
    "grec_record",
    "grec_record_from_prediction",
    "gres_metrics",
    "gres_sample_scores",
    "grec_record_for_row",
    "mask_counts",
    "module_path",
    "rec_metrics",
    "rec_record",
    "rec_record_from_prediction",
    "rec_record_for_row",
    "row_gt_boxes",
    "row_gt_mask",
    "refzom_metrics",
    "res_metrics",
    "rrefcoco_metrics",
    "rrefcoco_ref_scores",
    "segmentation_record",
    "segmentation_record_for_row",
    "segmentation_records",
    *_LAZY,
]
