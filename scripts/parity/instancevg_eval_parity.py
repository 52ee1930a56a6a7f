"""``--mode evaluators``: the ORIGINAL InstanceVG evaluators vs ``refseg.metrics`` with the documented options.

The same random predictions (merged masks, ten weighted query scores and boxes per sentence, in the 320 x 320
frame) and ground truth go through the original's ``gres_evaluate``, ``grec_evaluate_f1_nacc``,
``refzom_evaluate`` and ``rrefcoco_evaluate`` (``instancevg/evaluations``, imported from the user's checkout) and
through ``refseg.metrics`` built as ``docs/models/instancevg.md`` ("Reproducing the original evaluators'
numbers") says: records of the merged mask before the no-target decision, no-target = no score above 0.7,
``no_target_rule="flag"``, and for R-RefCOCO ``gate_with_no_target=False``. Scores are drawn away from 0.7
(the original keeps GREC boxes at ``>= 0.7``, refseg's post-processing at ``> 0.7``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from refseg import metrics  # before the original's stubs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instancevg_original import import_original  # noqa: E402

SIZE = 64  # the evaluators do not depend on the frame; 320 in the original, smaller here for speed
THRESHOLD = 0.7


def _rect(rng: np.random.Generator) -> tuple[int, int, int, int]:
    x0, y0 = rng.integers(0, SIZE - 8, 2)
    w, h = rng.integers(4, SIZE // 2, 2)
    return int(x0), int(y0), int(min(x0 + w, SIZE)), int(min(y0 + h, SIZE))


def make_samples(n_refs: int = 30, seed: int = 0) -> list[dict]:
    """Sentences grouped by ref (1-3 positives, 0-2 negatives each); every field both sides need."""
    rng = np.random.default_rng(seed)
    samples = []
    for ref in range(n_refs):
        n_pos, n_neg = int(rng.integers(1, 4)), int(rng.integers(0 if ref % 5 else 1, 3))
        n_neg = max(n_neg, 1)  # the original's R-RefCOCO divides by the negatives of each ref
        for k in range(n_pos + n_neg):
            negative = k >= n_pos
            gt = np.zeros((SIZE, SIZE), dtype=bool)
            gt_boxes = []
            if not negative:
                for _ in range(int(rng.integers(1, 3))):
                    x0, y0, x1, y1 = _rect(rng)
                    gt[y0:y1, x0:x1] = True
                    gt_boxes.append([x0, y0, x1, y1])
            pred = np.zeros((SIZE, SIZE), dtype=bool)
            for _ in range(int(rng.integers(0, 3))):
                x0, y0, x1, y1 = _rect(rng)
                pred[y0:y1, x0:x1] = True
            if gt_boxes and rng.random() < 0.5:  # a good prediction now and then
                pred |= gt
            scores = rng.uniform(0.0, 1.0, 10)
            scores[np.abs(scores - THRESHOLD) < 1e-3] += 0.01
            if rng.random() < 0.4:
                scores = scores * 0.6  # no query kept: predicted no-target
            boxes = []
            for q in range(10):
                if q < len(gt_boxes) and rng.random() < 0.7:
                    boxes.append([v + float(rng.uniform(-2, 2)) for v in gt_boxes[q]])
                else:
                    x0, y0, x1, y1 = _rect(rng)
                    boxes.append([x0, y0, x1, y1])
            samples.append(
                {
                    "ref": ref,
                    "negative": negative,
                    "gt": gt,
                    "gt_boxes": np.array(gt_boxes, dtype=np.float32).reshape(-1, 4),
                    "pred": pred,
                    "scores": scores.astype(np.float32),
                    "boxes": np.clip(np.array(boxes, dtype=np.float32), 0, SIZE),
                }
            )
    return samples


def original_metrics(checkout: str, samples: list[dict]) -> dict[str, float]:
    import pycocotools.mask as mask_utils

    import_original(checkout)
    from instancevg.evaluations.grefcoco import grec_evaluate_f1_nacc, gres_evaluate
    from instancevg.evaluations.refzom import refzom_evaluate
    from instancevg.evaluations.rrefcoco import rrefcoco_evaluate

    def rle(mask):
        return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))

    pred_bboxes = [
        {"scores": torch.from_numpy(s["scores"]), "boxes": torch.from_numpy(s["boxes"])} for s in samples
    ]
    pred_masks = [{"pred_masks": rle(s["pred"]), "gt_nt": s["negative"]} for s in samples]
    gt_masks = [rle(s["gt"]) for s in samples]
    out = {}
    g = gres_evaluate(pred_bboxes, pred_masks, gt_masks, threshold=THRESHOLD)
    out.update({"GRES gIoU": g[0], "GRES cIoU": g[1], "GRES T-acc": g[2], "GRES N-acc": g[3]})
    out.update({f"GRES Pr@{t}": v for t, v in zip((0.7, 0.8, 0.9), g[4])})
    gt_boxes = [torch.from_numpy(s["gt_boxes"]) if len(s["gt_boxes"]) else torch.zeros(1, 4) for s in samples]
    metas = [{"empty": s["negative"]} for s in samples]
    f1, n_acc, t_acc = grec_evaluate_f1_nacc(pred_bboxes, gt_boxes, metas, thresh_score=THRESHOLD)
    out.update({"GREC Pr@(F1=1, IoU>=0.5)": f1, "GREC N-acc": n_acc, "GREC T-acc": t_acc})
    miou, oiou, acc = refzom_evaluate(pred_bboxes, pred_masks, gt_masks, threshold=THRESHOLD)[:3]
    out.update({"Ref-ZOM mIoU": miou, "Ref-ZOM oIoU": oiou, "Ref-ZOM Acc": acc})
    refs = [s["ref"] for s in samples]
    starts = [i for i in range(len(refs)) if i == 0 or refs[i] != refs[i - 1]]
    index = [[a, b] for a, b in zip(starts, starts[1:] + [len(refs)])]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "instance_index.json")
        Path(path).write_text(json.dumps({"val_rrefcoco": index}))
        r = rrefcoco_evaluate(
            pred_bboxes, pred_masks, gt_masks, threshold=THRESHOLD, instance_index_file=path
        )
    out.update(
        {"R-RefCOCO mIoU": r[0], "R-RefCOCO oIoU": r[1], "R-RefCOCO mRR": r[2], "R-RefCOCO rIoU": r[3]}
    )
    return {k: float(v) for k, v in out.items()}


def refseg_metrics(samples: list[dict]) -> dict[str, float]:
    records, grec = [], []
    for s in samples:
        no_target = not bool((s["scores"] > THRESHOLD).any())
        records.append(
            metrics.segmentation_record(
                {"mask": s["pred"], "no_target": no_target},
                s["gt"],
                gt_no_target=s["negative"],
                ref_id=s["ref"],
            )
        )
        grec.append(metrics.grec_record(s["boxes"], s["scores"], s["gt_boxes"], gt_no_target=s["negative"]))
    g = metrics.gres_metrics(records, resolution=SIZE)
    e = metrics.grec_metrics(grec, resolution=SIZE)
    z = metrics.refzom_metrics(records, resolution=SIZE, no_target_rule="flag")
    r = metrics.rrefcoco_metrics(records, resolution=SIZE, gate_with_no_target=False, no_target_rule="flag")
    out = {f"GRES {k}": g[k] for k in ("gIoU", "cIoU", "T-acc", "N-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9")}
    out.update({f"GREC {k}": e[k] for k in ("Pr@(F1=1, IoU>=0.5)", "N-acc", "T-acc")})
    out.update({f"Ref-ZOM {k}": z[k] for k in ("mIoU", "oIoU", "Acc")})
    out.update({f"R-RefCOCO {k}": r[k] for k in ("mIoU", "oIoU", "mRR", "rIoU")})
    return {k: float(v) for k, v in out.items()}


def evaluator_parity(checkout: str, seed: int = 0) -> bool:
    samples = make_samples(seed=seed)
    reference, ours = original_metrics(checkout, samples), refseg_metrics(samples)
    print(f"{len(samples)} sentences, {len({s['ref'] for s in samples})} refs")
    print("| metric | original | refseg | abs diff |")
    print("|---|---|---|---|")
    ok = True
    for key, value in reference.items():
        diff = abs(value - ours[key])
        ok &= diff <= 1e-6 * max(1.0, abs(value))
        print(f"| {key} | {value:.4f} | {ours[key]:.4f} | {diff:.1e} |")
    defaults = default_metrics(samples)
    print("examples/evaluate.py's records (final mask, empty when no query is kept) and default options:")
    print("| metric | original | refseg defaults |")
    print("|---|---|---|")
    for key, value in defaults.items():
        print(f"| {key} | {reference[key]:.4f} | {value:.4f} |")
    return ok


def default_metrics(samples: list[dict]) -> dict[str, float]:
    """What ``examples/evaluate.py`` computes for Ref-ZOM and R-RefCOCO (RefSegformer / RIS-DMMI definitions)."""
    records = []
    for s in samples:
        no_target = not bool((s["scores"] > THRESHOLD).any())
        mask = np.zeros_like(s["pred"]) if no_target else s["pred"]
        records.append(
            metrics.segmentation_record(
                {"mask": mask, "no_target": no_target}, s["gt"], gt_no_target=s["negative"], ref_id=s["ref"]
            )
        )
    z = metrics.refzom_metrics(records, resolution=SIZE)
    r = metrics.rrefcoco_metrics(records, resolution=SIZE)
    out = {f"Ref-ZOM {k}": z[k] for k in ("mIoU", "oIoU", "Acc")}
    out.update({f"R-RefCOCO {k}": r[k] for k in ("mIoU", "oIoU", "mRR", "rIoU")})
    return {k: float(v) for k, v in out.items()}
