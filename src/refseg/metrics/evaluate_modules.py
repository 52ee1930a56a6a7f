"""🤗 ``evaluate`` wrappers of the refseg metrics (thin: the pure functions do the work).

Use the classes directly (``GRESMetric().add_batch(...)``) or load the bundled module scripts offline with
``evaluate.load(refseg.metrics.module_path("gres"))``. Mask metrics store per-sample counts, never pixels
(``add_masks`` / ``add_predictions`` count them first); box metrics store the boxes. ``compute`` needs
``resolution=`` (``"original"`` or e.g. ``"480x480"``), which is written into the result with the
definition's name. For several processes, gather records with ``accelerator.gather_for_metrics`` and
compute on the main process rather than use evaluate's ``num_process`` file locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate

from .grec import GREC_IOU_THRESHOLD, GREC_SCORE_THRESHOLD, grec_metrics, grec_record
from .gres import gres_metrics
from .mask_records import MaskRecord, mask_columns, segmentation_records
from .rec import rec_metrics, rec_record
from .refzom import refzom_metrics
from .res import res_metrics
from .rrefcoco import rrefcoco_metrics

_CITATION = (
    "see the `definition` field of each result and refseg/metrics/<name>.py for the source code evaluated"
)

_COUNT_FEATURES = {
    "intersection": datasets.Value("int64"),
    "union": datasets.Value("int64"),
    "pred_area": datasets.Value("int64"),
    "gt_area": datasets.Value("int64"),
    "pred_no_target": datasets.Value("bool"),
    "gt_no_target": datasets.Value("bool"),
}

_COUNT_INPUTS = """
Per-sample counts at the evaluation resolution (one entry per sentence):
    intersection (int): |P n G|;  union (int): |P u G|;  pred_area (int): |P|;  gt_area (int): |G|;
    pred_no_target (bool): the model predicts that nothing is referred to;
    gt_no_target (bool): the annotation says nothing is referred to.
Keyword arguments of `compute`:
    resolution (str, required): "original" or "HxW", e.g. "480x480".
"""


def _require_resolution(resolution: Any) -> Any:
    if resolution is None:
        raise ValueError('pass the evaluation resolution to compute(), e.g. compute(resolution="480x480")')
    return resolution


class _MaskCountMetric(evaluate.Metric):
    """Shared input handling of the mask metrics: add records, masks or post-processed predictions."""

    _with_ref_id = False
    _description = ""

    def _info(self) -> evaluate.MetricInfo:
        features = dict(_COUNT_FEATURES)
        inputs = _COUNT_INPUTS
        if self._with_ref_id:
            features["ref_id"] = datasets.Value("int64")
            inputs += (
                "    ref_id (int): the ref (object) a sentence describes; sentences are grouped by it.\n"
            )
        return evaluate.MetricInfo(
            description=self._description,
            citation=_CITATION,
            inputs_description=inputs,
            features=datasets.Features(features),
            codebase_urls=[],
            reference_urls=[],
        )

    def _fields(self) -> list[str]:
        return list(_COUNT_FEATURES) + (["ref_id"] if self._with_ref_id else [])

    def add_records(self, records: Sequence[MaskRecord] | Any) -> None:
        """Add ``MaskRecord`` s (or mappings / columns with the same fields)."""
        cols = mask_columns(records)
        self.add_batch(**{name: cols[name].tolist() for name in self._fields()})

    def add_masks(
        self,
        predictions: Sequence[Any] | Any,
        gt_masks: Sequence[Any] | Any,
        *,
        gt_no_target: Sequence[bool] | None = None,
        pred_no_target: Sequence[bool] | None = None,
        ref_ids: Sequence[int] | None = None,
    ) -> None:
        """Count and add a batch: prediction dicts (DESIGN contract) or masks, and GT masks (see ``segmentation_records``)."""
        self.add_records(
            segmentation_records(
                predictions,
                gt_masks,
                gt_no_target=gt_no_target,
                pred_no_target=pred_no_target,
                ref_ids=ref_ids,
            )
        )

    def _columns(self, **inputs: Any) -> dict[str, Any]:
        return {name: inputs[name] for name in self._fields()}


class GRESMetric(_MaskCountMetric):
    """gIoU, cIoU, N-acc, T-acc, Pr@0.7/0.8/0.9 (ReLA's gRefCOCO evaluator); see ``refseg.metrics.gres``."""

    _description = (
        "GRES metrics as ReLA's official gRefCOCO evaluator: gIoU, cIoU, N-acc, T-acc, Pr@{0.7,0.8,0.9}."
    )

    def _compute(self, resolution: Any = None, **inputs: Any) -> dict:
        return gres_metrics(self._columns(**inputs), resolution=_require_resolution(resolution))


class RESMetric(_MaskCountMetric):
    """mIoU, oIoU, P@0.5..0.9 (LAVT's RefCOCO evaluator); see ``refseg.metrics.res``."""

    _description = "Classic RES metrics as LAVT's evaluator: mIoU, oIoU, P@{0.5,...,0.9}."

    def _compute(self, resolution: Any = None, **inputs: Any) -> dict:
        return res_metrics(self._columns(**inputs), resolution=_require_resolution(resolution))


class RefZOMMetric(_MaskCountMetric):
    """oIoU, mIoU, P@t and zero-target Acc (DMMI's Ref-ZOM evaluator); see ``refseg.metrics.refzom``."""

    _description = (
        "Ref-ZOM metrics as DMMI's evaluator: oIoU, mIoU, P@{0.5,...,0.9} on targets, Acc on zero-target."
    )

    def _compute(self, resolution: Any = None, no_target_rule: str = "empty_mask", **inputs: Any) -> dict:
        return refzom_metrics(
            self._columns(**inputs), resolution=_require_resolution(resolution), no_target_rule=no_target_rule
        )


class RRefCOCOMetric(_MaskCountMetric):
    """mIoU, oIoU, mRR, rIoU grouped by ref (RefSegformer's evaluator); see ``refseg.metrics.rrefcoco``."""

    _with_ref_id = True
    _description = "R-RefCOCO metrics as RefSegformer's evaluator: mIoU, oIoU, mRR, rIoU (grouped by ref)."

    def _compute(
        self,
        resolution: Any = None,
        gate_with_no_target: bool = True,
        no_target_rule: str = "empty_mask",
        **inputs: Any,
    ) -> dict:
        return rrefcoco_metrics(
            self._columns(**inputs),
            resolution=_require_resolution(resolution),
            gate_with_no_target=gate_with_no_target,
            no_target_rule=no_target_rule,
        )


def _boxes_of(prediction: Any) -> tuple[list[list[float]], list[float]]:
    if "instances" not in prediction:
        raise ValueError(f"prediction dict has no 'instances' key (keys: {sorted(prediction)})")
    boxes = [
        [float(v) for v in (inst["box"].tolist() if hasattr(inst["box"], "tolist") else inst["box"])]
        for inst in prediction["instances"]
    ]
    scores = [float(inst["score"]) for inst in prediction["instances"]]
    return boxes, scores


class GRECMetric(evaluate.Metric):
    """Pr@(F1=1, IoU>=0.5), N-acc, T-acc (gRefCOCO's GREC evaluator); see ``refseg.metrics.grec``."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="GREC metrics as gRefCOCO's official evaluator: Pr@(F1=1, IoU>=0.5), N-acc, T-acc.",
            citation=_CITATION,
            inputs_description="""
Per expression: pred_boxes (list of [x0, y0, x1, y1]), pred_scores (list of float), gt_boxes (list of
[x0, y0, x1, y1]; may be empty for no-target), gt_no_target (bool). Boxes in one pixel frame.
Keyword arguments of `compute`: resolution (required), score_threshold=0.7, iou_threshold=0.5,
box_format="xyxy" ("xywh" for COCO boxes).
""",
            features=datasets.Features(
                {
                    "pred_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "pred_scores": datasets.Sequence(datasets.Value("float64")),
                    "gt_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "gt_no_target": datasets.Value("bool"),
                }
            ),
            codebase_urls=[],
            reference_urls=[],
        )

    def add_predictions(
        self, predictions: Sequence[Any], gt_boxes: Sequence[Any], gt_no_target: Sequence[bool] | None = None
    ) -> None:
        """Add post-processed prediction dicts (their ``instances``) with GT boxes."""
        pairs = [_boxes_of(p) for p in predictions]
        gt = [[list(map(float, b)) for b in (g.tolist() if hasattr(g, "tolist") else g)] for g in gt_boxes]
        flags = [len(g) == 0 for g in gt] if gt_no_target is None else [bool(f) for f in gt_no_target]
        self.add_batch(
            pred_boxes=[b for b, _ in pairs],
            pred_scores=[s for _, s in pairs],
            gt_boxes=gt,
            gt_no_target=flags,
        )

    def _compute(
        self,
        pred_boxes: list,
        pred_scores: list,
        gt_boxes: list,
        gt_no_target: list,
        resolution: Any = None,
        score_threshold: float = GREC_SCORE_THRESHOLD,
        iou_threshold: float = GREC_IOU_THRESHOLD,
        box_format: str = "xyxy",
    ) -> dict:
        resolution = _require_resolution(resolution)
        records = [
            grec_record(
                pb,
                ps,
                gb,
                gt_no_target=nt,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                box_format=box_format,
            )
            for pb, ps, gb, nt in zip(pred_boxes, pred_scores, gt_boxes, gt_no_target)
        ]
        return grec_metrics(records, resolution=resolution)


class RECMetric(evaluate.Metric):
    """Precision@0.5 of the top-scoring box (REC); see ``refseg.metrics.rec``."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="REC Precision@0.5: the top-scoring box overlaps the ground-truth box with IoU >= 0.5.",
            citation=_CITATION,
            inputs_description="""
Per expression: pred_boxes (list of [x0, y0, x1, y1]), pred_scores (list of float), gt_box ([x0, y0, x1, y1]).
Keyword arguments of `compute`: resolution (required), iou_type="iou" ("giou" = MDETR), box_format="xyxy".
""",
            features=datasets.Features(
                {
                    "pred_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "pred_scores": datasets.Sequence(datasets.Value("float64")),
                    "gt_box": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            codebase_urls=[],
            reference_urls=[],
        )

    def add_predictions(self, predictions: Sequence[Any], gt_boxes: Sequence[Any]) -> None:
        """Add post-processed prediction dicts (their ``instances``) with one GT box each."""
        pairs = [_boxes_of(p) for p in predictions]
        gt = [[float(v) for v in (g.tolist() if hasattr(g, "tolist") else g)] for g in gt_boxes]
        self.add_batch(pred_boxes=[b for b, _ in pairs], pred_scores=[s for _, s in pairs], gt_box=gt)

    def _compute(
        self,
        pred_boxes: list,
        pred_scores: list,
        gt_box: list,
        resolution: Any = None,
        iou_type: str = "iou",
        box_format: str = "xyxy",
    ) -> dict:
        resolution = _require_resolution(resolution)
        records = [
            rec_record(pb, ps, gb, iou_type=iou_type, box_format=box_format)
            for pb, ps, gb in zip(pred_boxes, pred_scores, gt_box)
        ]
        return rec_metrics(records, resolution=resolution, iou_type=iou_type)


METRIC_CLASSES: dict[str, type[evaluate.Metric]] = {
    "gres": GRESMetric,
    "res": RESMetric,
    "refzom": RefZOMMetric,
    "rrefcoco": RRefCOCOMetric,
    "grec": GRECMetric,
    "rec": RECMetric,
}
